//! Malformed, truncated and hostile frames never crash the guard, always get an answer when they came
//! from the client, and never disturb another session. Property-based (proptest): valid MCP frames
//! are truncated, spliced, byte-flipped and nested, then fed to both directions of one session while
//! a second session keeps working.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mcp_guard_policy::load::parse_spec;
use mcp_guard_proxy::audit::Audit;
use mcp_guard_proxy::engine::Engine;
use mcp_guard_proxy::guard::{Forward, Guard};
use mcp_guard_proxy::metrics::Metrics;
use mcp_guard_proxy::session::SessionState;
use proptest::prelude::*;
use serde_json::{Value, json};

fn guard() -> Guard {
    let spec = parse_spec(json!({
        "tools": {"deny": ["shell"], "blockUndeclared": true},
        "rules": [{"id": "etc", "action": "block", "args": [{"pointer": "/path", "regex": "^/etc/"}]}],
        "detectors": {
            "credentialLeak": {"action": "block", "scanResults": true},
            "rateLimit": {"action": "block", "perSession": {"maxCalls": 100000, "window": "1m"}},
            "sequences": [{"id": "w-x", "action": "block", "steps": ["write*", "exec*"], "within": "1m"}]
        }
    }))
    .unwrap();
    let engine = Engine::new(mcp_guard_policy::compile(&spec).unwrap()).unwrap();
    Guard::new(engine, None, Audit::disabled(), Arc::new(Metrics::new()))
}

/// Valid frames of both directions to mutate.
const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","arguments":{"path":"/etc/passwd","n":[1,2,{"a":"b"}]}}}"#,
    r#"[{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"shell","arguments":{}}},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"abc"}}"#,
    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","inputSchema":{"type":"object"}}],"nextCursor":null}}"#,
    r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"AKIAQYLPMN5HHHFPZAM2"}]}}"#,
    r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32000,"message":"boom"}}"#,
    r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{}}"#,
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Splice(usize, String),
    Nest(usize),
    Duplicate,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            "[\\[\\]{}\",:\\\\0-9a-z\\u{0}-\\u{1f}\\u{ffff}]{0,12}"
        )
            .prop_map(|(i, s)| Mutation::Splice(i, s)),
        (1usize..2000).prop_map(Mutation::Nest),
        Just(Mutation::Duplicate),
    ]
}

fn apply(seed: &str, m: &Mutation) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
        Mutation::Flip(i, b) => {
            let i = i % bytes.len();
            bytes[i] ^= b | 1;
        }
        Mutation::Splice(i, s) => {
            let i = i % (bytes.len() + 1);
            bytes.splice(i..i, s.bytes());
        }
        Mutation::Nest(depth) => {
            return format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"read","arguments":{}1{}}}}}"#,
                "[".repeat(*depth),
                "]".repeat(*depth)
            );
        }
        Mutation::Duplicate => return format!("{seed}{seed}"),
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The healthy session still lists and calls as it should.
fn healthy_session_still_works(g: &Guard, s: &mut SessionState, id: u64) {
    let list = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
    assert_eq!(g.client_frame(s, &list).forward, Forward::Original);
    let answer =
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"read"}}]}}}}"#);
    assert_eq!(
        g.server_frame(s, &answer).unwrap().forward,
        Forward::Original
    );
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"read","arguments":{{"path":"/srv/x"}}}}}}"#,
        id + 1
    );
    let out = g.client_frame(s, &call);
    assert_eq!((out.forward, out.reply), (Forward::Original, None));
    let blocked = format!(
        r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"read","arguments":{{"path":"/etc/shadow"}}}}}}"#,
        id + 2
    );
    let out = g.client_frame(s, &blocked);
    assert_eq!(out.forward, Forward::Nothing);
    let reply: Value = serde_json::from_str(&out.reply.unwrap()).unwrap();
    assert_eq!(
        (
            reply["id"].as_u64(),
            reply["error"]["data"]["rule"].as_str()
        ),
        (Some(id + 2), Some("etc"))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn hostile_frames_never_crash_or_leak_into_other_sessions(
        frames in proptest::collection::vec((0..SEEDS.len(), mutation()), 1..8),
    ) {
        let g = guard();
        let mut hostile = SessionState::new("hostile");
        let mut healthy = SessionState::new("healthy");
        for (k, (seed, m)) in frames.iter().enumerate() {
            let text = apply(SEEDS[*seed], m);
            let from_client = g.client_frame(&mut hostile, &text);
            // Whatever the client sent, it is either forwarded or answered: never silently dropped.
            prop_assert!(from_client.forward != Forward::Nothing || from_client.reply.is_some(), "{text}");
            if let Some(reply) = &from_client.reply {
                // Answers are valid JSON-RPC (a single message or a batch).
                let v: Value = serde_json::from_str(reply).unwrap();
                prop_assert!(v.is_object() || v.is_array());
            }
            let _ = g.server_frame(&mut hostile, &text);
            healthy_session_still_works(&g, &mut healthy, 10_000 + 10 * k as u64);
        }
    }
}

#[test]
fn deeply_nested_arguments_are_refused_not_overflowed() {
    let g = guard();
    let mut s = SessionState::new("s");
    let deep = apply(SEEDS[0], &Mutation::Nest(100_000));
    let out = g.client_frame(&mut s, &deep);
    assert_eq!(out.forward, Forward::Nothing);
    // The envelope parses, so the refusal carries the request's id; serde_json's recursion limit stops
    // the arguments before they can overflow the stack.
    let reply: Value = serde_json::from_str(&out.reply.unwrap()).unwrap();
    assert_eq!(
        (reply["id"].as_i64(), reply["error"]["code"].as_i64()),
        (Some(1), Some(-32602)),
        "{reply}"
    );
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit exceeded")
    );
}

#[test]
fn calls_in_a_batch_are_never_held_for_asking() {
    // A held call's answer must travel alone; in a batch the ask falls back (here: block).
    let spec = parse_spec(json!({
        "rules": [{"id": "ask-it", "action": "ask", "args": [{"anyString": true, "regex": "deploy"}]}],
        "ask": {"via": "elicitation", "timeout": "5s", "fallback": "block"}
    }))
    .unwrap();
    let engine = Engine::new(mcp_guard_policy::compile(&spec).unwrap()).unwrap();
    let g = Guard::new(engine, None, Audit::disabled(), Arc::new(Metrics::new()));
    let mut s = SessionState::new("s");
    s.asks.transport_can_ask = true;
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}"#;
    g.client_frame(&mut s, init);
    let call = |id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"x","arguments":{{"a":"deploy"}}}}}}"#
        )
    };
    let alone = g.client_frame(&mut s, &call(1));
    let asked: Value = serde_json::from_str(&alone.reply.unwrap()).unwrap();
    assert_eq!(
        asked["method"], "elicitation/create",
        "a lone call is held and asked"
    );
    let batch = g.client_frame(&mut s, &format!("[{}]", call(2)));
    let reply: Value = serde_json::from_str(&batch.reply.unwrap()).unwrap();
    assert_eq!(
        reply["error"]["data"]["rule"], "ask-it",
        "the batched call falls back: {reply}"
    );
    assert_eq!(batch.forward, Forward::Nothing);
}
