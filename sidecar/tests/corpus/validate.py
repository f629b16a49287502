#!/usr/bin/env python3
"""Checks the detection corpus: JSON Lines syntax, the case schema, session rules and secret markers.

    python3 sidecar/tests/corpus/validate.py            # check everything, print counts
    python3 sidecar/tests/corpus/validate.py --resolve ID   # print one case with its markers resolved

Standard library only. Exit status 0 when every check passes, 1 otherwise. The rules it enforces are
the ones README.md documents; `resolve()` is the reference for how a runner expands secret markers.
"""
import base64
import json
import os
import re
import sys
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = {"attack", "benign"}
DETECTORS = {"promptInjection", "rugPull", "taint", "credentialLeak", "rules", "sequence", "tools", "rateLimit"}
# Detectors whose finding is on a client tools/call, on a server message, or either.
ON_CALL = {"rules", "sequence", "tools", "rateLimit", "taint"}
ON_SERVER = {"promptInjection", "rugPull"}
ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# A marker: {{NAME}} or {{NAME|transform|transform...}}. Anything else with braces is plain text
# (`${{ secrets.X }}`, `{{.Names}}`).
MARKER_RE = re.compile(r"\{\{([A-Z][A-Z0-9_]*)((?:\|[a-z0-9:]+)*)\}\}")
TRANSFORM_RE = re.compile(r"^(b64|b64url|hex|pct|json|jsonu|slice:\d+:\d*)$")
MIN_ATTACKS_PER_FAMILY = 15


def load_secrets():
    with open(os.path.join(HERE, "secrets.json"), encoding="utf-8") as f:
        doc = json.load(f)
    return doc["secrets"]


def transform(value, t):
    raw = value.encode("utf-8")
    if t == "b64":
        return base64.b64encode(raw).decode()
    if t == "b64url":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if t == "hex":
        return raw.hex()
    if t == "pct":
        return "".join(f"%{b:02X}" for b in raw)
    if t == "json":
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if t == "jsonu":
        return "".join(f"\\u{ord(c):04x}" for c in value)
    if t.startswith("slice:"):
        _, a, b = t.split(":")
        return value[int(a):int(b)] if b else value[int(a):]
    raise ValueError(f"unknown transform {t}")


def resolve_text(text, secrets, depth=0):
    """Expands every marker in `text`. Secret parts are joined, then expanded themselves."""
    if depth > 8:
        raise ValueError("marker nesting too deep (a cycle?)")

    def one(m):
        name = m.group(1)
        if name not in secrets:
            raise KeyError(name)
        value = resolve_text("".join(secrets[name]), secrets, depth + 1)
        for t in filter(None, m.group(2).split("|")):
            value = transform(value, t)
        return value

    return MARKER_RE.sub(one, text)


def resolve(value, secrets):
    """A message with every marker in its string values (not keys) expanded."""
    if isinstance(value, str):
        return resolve_text(value, secrets)
    if isinstance(value, list):
        return [resolve(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, secrets) for k, v in value.items()}
    return value


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)


def check_case(c, where, secrets, errors):
    def err(msg):
        errors.append(f"{where}: {c.get('id', '?')}: {msg}")

    for key in ("id", "label", "category", "detector", "source", "steps", "expect"):
        if key not in c:
            err(f"missing field {key}")
            return
    if not isinstance(c["id"], str) or not ID_RE.match(c["id"]):
        err("id must be lowercase letters, digits and '-'")
    if c["label"] not in LABELS:
        err(f"label {c['label']!r} is not attack or benign")
    if c["detector"] not in DETECTORS:
        err(f"detector {c['detector']!r} is not one of {sorted(DETECTORS)}")
    if not isinstance(c["source"], str) or not c["source"].strip():
        err("source must be a non-empty string")
    steps = c["steps"]
    if not isinstance(steps, list) or len(steps) < 2:
        err("steps must be a list of at least two steps")
        return
    expect = c["expect"]
    if not isinstance(expect, dict) or "flagged_step" not in expect:
        err("expect must be an object with flagged_step")
        return

    # --- session rules --------------------------------------------------------------------------
    pending = {}  # id -> method of client requests awaiting an answer
    sent_ids = set()
    declared = set()
    listed = False
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("dir") not in ("client", "server") or not isinstance(step.get("msg"), dict):
            err(f"step {i}: needs dir client|server and an object msg")
            return
        msg = step["msg"]
        if msg.get("jsonrpc") != "2.0":
            err(f"step {i}: jsonrpc must be '2.0'")
        has_id = "id" in msg
        method = msg.get("method")
        if step["dir"] == "client":
            if method is None:
                err(f"step {i}: a client step must be a request or notification")
                continue
            if has_id:
                if msg["id"] in sent_ids:
                    err(f"step {i}: request id {msg['id']} reused")
                sent_ids.add(msg["id"])
                pending[msg["id"]] = method
            if i == 0 and (method != "tools/list" or not has_id or "cursor" in (msg.get("params") or {})):
                err("step 0 must be the client's tools/list request (first page)")
            if method == "tools/call":
                params = msg.get("params") or {}
                name = params.get("name")
                if not isinstance(name, str) or not isinstance(params.get("arguments", {}), dict):
                    err(f"step {i}: tools/call needs params.name and object params.arguments")
                elif name not in declared and c["detector"] != "tools":
                    err(f"step {i}: tool {name!r} was not declared by an earlier tools/list answer")
        else:
            if method is not None and not has_id:
                continue  # a server notification, e.g. notifications/tools/list_changed
            if method is not None:
                err(f"step {i}: server-to-client requests are not used in this corpus")
                continue
            if not has_id or msg["id"] not in pending:
                err(f"step {i}: server response id {msg.get('id')!r} answers no pending client request")
                continue
            answered = pending.pop(msg["id"])
            if ("result" in msg) == ("error" in msg):
                err(f"step {i}: a response has exactly one of result and error")
            if answered == "tools/list" and "result" in msg:
                tools = msg["result"].get("tools")
                if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
                    err(f"step {i}: tools/list result needs a tools array of objects with a name")
                else:
                    declared.update(t["name"] for t in tools)
                    for t in tools:
                        if not isinstance(t.get("inputSchema"), dict):
                            err(f"step {i}: tool {t['name']!r} has no inputSchema object")
                if i == 1:
                    listed = True
            if answered == "tools/call" and "result" in msg:
                content = msg["result"].get("content")
                if not isinstance(content, list):
                    err(f"step {i}: tools/call result needs a content array")
    if not listed:
        err("step 1 must be the server's answer to the tools/list request of step 0")

    # --- expectation ----------------------------------------------------------------------------
    f = expect["flagged_step"]
    if c["label"] == "benign":
        if f is not None:
            err("a benign case has flagged_step null")
    else:
        if not isinstance(f, int) or isinstance(f, bool) or not 0 <= f < len(steps):
            err(f"flagged_step {f!r} is not a step index")
        else:
            step = steps[f]
            msg = step["msg"]
            det = c["detector"]
            if det in ON_CALL and not (step["dir"] == "client" and msg.get("method") == "tools/call"):
                err(f"detector {det} flags a client tools/call, step {f} is not one")
            if det in ON_SERVER and step["dir"] != "server":
                err(f"detector {det} flags a server message, step {f} is not one")
            if det == "rugPull" and not (step["dir"] == "server" and isinstance(msg.get("result"), dict) and "tools" in msg["result"] and f > 1):
                err("a rug pull is flagged on a later tools/list answer")

    # --- markers --------------------------------------------------------------------------------
    used = False
    for s in strings([st["msg"] for st in steps]):
        for m in MARKER_RE.finditer(s):
            used = True
            if m.group(1) not in secrets:
                err(f"marker {m.group(1)} is not defined in secrets.json")
            for t in filter(None, m.group(2).split("|")):
                if not TRANSFORM_RE.match(t):
                    err(f"marker {m.group(0)}: unknown transform {t!r}")
    if used and c["label"] == "benign":
        err("benign cases do not use secret markers")
    try:
        resolve([st["msg"] for st in steps], secrets)
    except (KeyError, ValueError) as e:
        err(f"cannot resolve markers: {e}")


def check_secrets(secrets, errors):
    for name, parts in secrets.items():
        if not re.match(r"^[A-Z][A-Z0-9_]*$", name):
            errors.append(f"secrets.json: bad marker name {name!r}")
        if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
            errors.append(f"secrets.json: {name} must be a non-empty list of strings")
            continue
        try:
            resolve_text("".join(parts), secrets)
        except (KeyError, ValueError) as e:
            errors.append(f"secrets.json: {name}: {e}")


def main(argv):
    secrets = load_secrets()
    errors = []
    check_secrets(secrets, errors)
    cases = {}
    counts = defaultdict(Counter)
    files = []
    for sub in ("attacks", "benign"):
        d = os.path.join(HERE, sub)
        for name in sorted(os.listdir(d)):
            if name.endswith(".jsonl"):
                files.append((sub, name, os.path.join(d, name)))
    for sub, name, path in files:
        category = name[: -len(".jsonl")]
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        if not raw.endswith("\n"):
            errors.append(f"{sub}/{name}: missing final newline")
        for lineno, line in enumerate(raw.splitlines(), 1):
            where = f"{sub}/{name}:{lineno}"
            if not line.strip():
                errors.append(f"{where}: empty line")
                continue
            try:
                c = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{where}: invalid JSON: {e}")
                continue
            if not isinstance(c, dict):
                errors.append(f"{where}: a line is one JSON object")
                continue
            check_case(c, where, secrets, errors)
            cid = c.get("id")
            if cid in cases:
                errors.append(f"{where}: duplicate id {cid} (first in {cases[cid][0]})")
            cases[cid] = (where, c)
            expected_label = "attack" if sub == "attacks" else "benign"
            if c.get("label") != expected_label:
                errors.append(f"{where}: {cid}: files under {sub}/ hold {expected_label} cases")
            if c.get("category") != category:
                errors.append(f"{where}: {cid}: category {c.get('category')!r} differs from the file name {category!r}")
            counts[c.get("label")][c.get("category")] += 1
        # No resolved secret may appear verbatim in a case file (scanners must not see credentials).
        for sname, parts in secrets.items():
            value = resolve_text("".join(parts), secrets)
            if len(value) >= 12 and value in raw:
                errors.append(f"{sub}/{name}: holds the resolved value of {sname}; write the marker instead")

    if len(argv) > 2 and argv[1] == "--resolve":
        where, c = cases[argv[2]]
        c = dict(c, steps=[dict(s, msg=resolve(s["msg"], secrets)) for s in c["steps"]])
        print(json.dumps(c, indent=2, ensure_ascii=False))
        return 0

    for label in ("attack", "benign"):
        total = sum(counts[label].values())
        print(f"{label}: {total}")
        for cat, k in sorted(counts[label].items()):
            print(f"  {cat:28s} {k}")
            if label == "attack" and k < MIN_ATTACKS_PER_FAMILY:
                errors.append(f"attack family {cat} has {k} cases, fewer than {MIN_ATTACKS_PER_FAMILY}")
    if sum(counts["attack"].values()) < 200 or sum(counts["benign"].values()) < 200:
        errors.append("the corpus needs at least 200 attack and 200 benign cases")
    for e in errors:
        print("error:", e, file=sys.stderr)
    print("ok" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
