//! JSON-RPC frames as the HTTP transport handles them: the requests a frame carries, errors for
//! those the upstream will not answer, and merging or splitting frames.

use serde_json::value::RawValue;

use super::sessions::State;
use crate::guard::Guard;
use crate::jsonrpc::{self, Frame, Kind, code};
use crate::session::SessionState;

/// JSON-RPC errors (code -32603, `reason`) for the requests in `frame` that `state` still awaits
/// (their calls are audited as failed); with `all`, also for those it does not track.
pub(super) fn fail_requests(
    guard: &Guard,
    state: &State,
    frame: &str,
    reason: &str,
    all: bool,
) -> Vec<String> {
    let ids = request_ids(frame);
    if ids.is_empty() {
        return Vec::new();
    }
    let mut owed;
    let mut untracked = Vec::new();
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        owed = SessionState::new(s.id.clone());
        for id in ids {
            match s.pending.remove(&id) {
                Some(p) => {
                    owed.pending.insert(id, p);
                }
                None if all => untracked.push(id),
                None => {}
            }
        }
    }
    let mut errors = guard.fail_pending(&mut owed, reason);
    errors.extend(
        untracked
            .iter()
            .map(|id| jsonrpc::error_response(Some(id), code::INTERNAL_ERROR, reason, None)),
    );
    errors
}

/// The ids of the requests (not notifications or responses) in a frame.
pub(super) fn request_ids(frame: &str) -> Vec<String> {
    let id = |env: &jsonrpc::Envelope<'_>| {
        (env.kind() == Kind::Request)
            .then(|| env.id_text().map(str::to_owned))
            .flatten()
    };
    match jsonrpc::parse_frame(frame) {
        Ok(Frame::Single(env)) => id(&env).into_iter().collect(),
        Ok(Frame::Batch(items)) => items.iter().filter_map(|(_, env)| id(env)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Several JSON-RPC frames (single messages or batches) as one: the message itself when there is
/// one, else a batch of all their messages.
pub(super) fn merge_messages<'a>(frames: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut items: Vec<&str> = Vec::new();
    let mut batches = Vec::new();
    for f in frames {
        let t = f.trim();
        if t.is_empty() {
            continue;
        }
        match serde_json::from_str::<Vec<&RawValue>>(t) {
            Ok(batch) if t.starts_with('[') => batches.push(batch),
            _ => items.push(t),
        }
    }
    let mut all: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.iter().map(|r| r.get()))
        .collect();
    all.extend(items);
    match all.len() {
        0 => None,
        1 => all.pop().map(str::to_owned),
        _ => Some(format!("[{}]", all.join(","))),
    }
}

/// The messages of a frame (a batch's items, or the frame itself).
pub(super) fn split_messages(frame: &str) -> Vec<String> {
    let t = frame.trim();
    if t.starts_with('[')
        && let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(t)
    {
        return items.iter().map(|r| r.get().to_owned()).collect();
    }
    if t.is_empty() {
        return Vec::new();
    }
    vec![t.to_owned()]
}

pub(super) fn is_parse_error(reply: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Error {
        code: i64,
    }
    #[derive(serde::Deserialize)]
    struct Message {
        error: Error,
    }
    serde_json::from_str::<Message>(reply).is_ok_and(|m| m.error.code == code::PARSE_ERROR)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_merge_into_one_frame() {
        assert_eq!(merge_messages(["{\"id\":1}"]).unwrap(), "{\"id\":1}");
        assert_eq!(
            merge_messages(["[{\"id\":1},{\"id\":2}]", "{\"id\":3}"]).unwrap(),
            "[{\"id\":1},{\"id\":2},{\"id\":3}]"
        );
        assert_eq!(
            merge_messages(["{\"id\":1}", "[{\"id\":2}, {\"id\":3}]"]).unwrap(),
            "[{\"id\":2},{\"id\":3},{\"id\":1}]"
        );
        assert_eq!(merge_messages(["", " "]), None);
        assert_eq!(
            split_messages("[{\"id\":1}, {\"id\":2}]"),
            ["{\"id\":1}", "{\"id\":2}"]
        );
        assert_eq!(split_messages(" {\"id\":1}\n"), ["{\"id\":1}"]);
    }

    #[test]
    fn request_ids_skip_notifications_and_responses() {
        let frame = r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},
            {"jsonrpc":"2.0","id":"x","method":"b"},{"jsonrpc":"2.0","id":9,"result":{}}]"#;
        assert_eq!(request_ids(frame), ["1", "\"x\""]);
        assert!(request_ids("{oops").is_empty());
    }

    #[test]
    fn parse_errors_are_recognised() {
        assert!(is_parse_error(&jsonrpc::error_response(
            None,
            code::PARSE_ERROR,
            "x",
            None
        )));
        assert!(!is_parse_error(&jsonrpc::error_response(
            Some("1"),
            code::INVALID_REQUEST,
            "x",
            None
        )));
    }
}
