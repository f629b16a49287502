"""Render or lint a chart with Helm's own engine (helm-python-sdk).

usage: helm.py render CHART RELEASE NAMESPACE VALUES_JSON   -> the manifests, as one YAML stream
       helm.py lint CHART VALUES_JSON                        -> Helm's lint result, as JSON
A values error (schema) exits 3 with Helm's message on stderr.
"""
import json
import sys

from helm_python.chart import Chart, lint


def main() -> int:
    mode, chart = sys.argv[1], sys.argv[2]
    if mode == "render":
        release, namespace, values = sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
        try:
            out = Chart.load(chart).render(values, name=release, namespace=namespace, is_install=True)
        except Exception as e:  # Helm reports schema and template errors as exceptions
            print(e, file=sys.stderr)
            return 3
        for path in sorted(out):
            if out[path].strip() and not path.endswith("NOTES.txt"):
                sys.stdout.write(f"---\n# Source: {path}\n{out[path].strip()}\n")
        return 0
    if mode == "lint":
        print(json.dumps(lint(chart, json.loads(sys.argv[3]), strict=False)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


sys.exit(main())
