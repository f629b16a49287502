//! The HTTP transport's sessions: which [`SessionState`] judges a request or an event.
//!
//! * Streamable HTTP sessions, by `Mcp-Session-Id`. A state is created when an upstream answer
//!   carries a new id (normally the answer to `initialize`), or on first use of an id the proxy has
//!   not seen (a proxy restarted under a running client). It is dropped when a DELETE ends the
//!   session, when the upstream answers 404 for it, when the upstream refuses (4xx) the request
//!   that created it (an id a client invented must not keep a state alive; server-everything
//!   answers 400 to unknown ids), or after [`SESSION_IDLE`] without a request and without an open
//!   stream (clients rarely send DELETE; a long-running proxy must not keep every session forever).
//! * One shared "no-session" state for requests without the header: `initialize`, and every request
//!   of the stateless protocol (2026-07-28) and of servers that do not use sessions.
//! * Legacy HTTP+SSE sessions (2024-11-05), created when a GET stream's `endpoint` event names the
//!   POST URL, and dropped when that stream ends. Each has a channel into its stream, so the proxy
//!   can answer a blocked call there, where the client expects every answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::{HeaderMap, Uri};
use tokio::sync::{mpsc, oneshot};

use super::upstream::Body;
use crate::metrics::Metrics;
use crate::session::SessionState;

/// A session's state, shared by its concurrent requests and streams. Locked only for one guard call.
pub type State = Arc<Mutex<SessionState>>;

/// A Streamable HTTP session unused this long is forgotten (its server has most likely expired it).
/// Long, because a forgotten session loses what the guard learnt (e.g. the declared tools).
pub const SESSION_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// Messages waiting to be written into one legacy stream; a POST adding more waits for room.
const LEGACY_QUEUE: usize = 64;

/// The audit session name of the shared state.
pub const NO_SESSION: &str = "http-no-session";

/// A legacy session as seen by a POST to its endpoint.
#[derive(Debug, Clone)]
pub struct Legacy {
    pub state: State,
    /// Into the session's SSE stream (whole JSON-RPC messages).
    pub to_stream: mpsc::Sender<String>,
}

/// A held call's POST, waiting for the user's answer (see `ask`): where its answer goes, and the
/// POST's URI and headers, with which the call is forwarded when released.
pub struct Waiting {
    pub to_stream: oneshot::Sender<Body>,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").field("uri", &self.uri).finish()
    }
}

#[derive(Debug)]
struct Entry {
    state: State,
    last_used: Instant,
}

#[derive(Debug)]
pub struct Sessions {
    metrics: Arc<Metrics>,
    shared: State,
    streamable: Mutex<HashMap<String, Entry>>,
    /// By every key a POST may name the session with: the endpoint's path and query, and its
    /// session id.
    legacy: Mutex<HashMap<String, Legacy>>,
    /// Held calls' open POSTs, by session id and the call's request id.
    waiting: Mutex<HashMap<(String, String), Waiting>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            shared: Arc::new(Mutex::new(SessionState::new(NO_SESSION))),
            streamable: Mutex::new(HashMap::new()),
            legacy: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// The state of requests without a session.
    pub fn shared(&self) -> State {
        self.shared.clone()
    }

    /// The state of Streamable HTTP session `id`, and whether it was created now.
    pub fn session(&self, id: &str) -> (State, bool) {
        let mut map = lock(&self.streamable);
        if let Some(entry) = map.get_mut(id) {
            entry.last_used = Instant::now();
            return (entry.state.clone(), false);
        }
        // A session's POSTs can carry the proxy's `elicitation/create` on their SSE answer.
        let mut session = SessionState::new(id);
        session.asks.transport_can_ask = true;
        let state = Arc::new(Mutex::new(session));
        map.insert(
            id.to_owned(),
            Entry {
                state: state.clone(),
                last_used: Instant::now(),
            },
        );
        self.metrics.active_sessions.inc();
        (state, true)
    }

    /// Forgets Streamable HTTP session `id`.
    pub fn end(&self, id: &str) {
        if lock(&self.streamable).remove(id).is_some() {
            self.metrics.active_sessions.dec();
        }
    }

    /// Registers the open POST of held call `call_id` in session `session`.
    pub fn wait(&self, session: &str, call_id: &str, waiting: Waiting) {
        lock(&self.waiting).insert((session.to_owned(), call_id.to_owned()), waiting);
    }

    /// The open POST of held call `call_id`, unregistered.
    pub fn release(&self, session: &str, call_id: &str) -> Option<Waiting> {
        lock(&self.waiting).remove(&(session.to_owned(), call_id.to_owned()))
    }

    /// Whether held call `call_id`'s POST is still open and unanswered.
    pub fn is_waiting(&self, session: &str, call_id: &str) -> bool {
        lock(&self.waiting).contains_key(&(session.to_owned(), call_id.to_owned()))
    }

    /// Forgets the sessions unused for `idle`, except those an open stream or request still holds.
    pub fn sweep(&self, idle: Duration) {
        let mut map = lock(&self.streamable);
        let before = map.len();
        map.retain(|_, e| e.last_used.elapsed() < idle || Arc::strong_count(&e.state) > 1);
        for _ in map.len()..before {
            self.metrics.active_sessions.dec();
        }
    }

    /// The legacy session a POST to `path_and_query` belongs to: the exact endpoint, or any query
    /// value that is a legacy session's id (so reordered or re-encoded query strings still match).
    pub fn legacy(&self, path_and_query: &str) -> Option<Legacy> {
        let map = lock(&self.legacy);
        if map.is_empty() {
            return None;
        }
        if let Some(l) = map.get(path_and_query) {
            return Some(l.clone());
        }
        let query = path_and_query.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('=').map(|(_, v)| v))
            .find_map(|v| map.get(v).cloned())
    }

    /// Registers a legacy session reachable at `endpoint` (path and query) with id `session_id`;
    /// it lives as long as the returned registration.
    pub fn register_legacy(
        self: &Arc<Self>,
        endpoint: &str,
        session_id: &str,
    ) -> (State, mpsc::Receiver<String>, LegacyRegistration) {
        // A legacy session's initialize runs on this state, so its lifecycle is enforced.
        let mut session = SessionState::new(session_id);
        session.enforce_lifecycle = true;
        let state = Arc::new(Mutex::new(session));
        let (tx, rx) = mpsc::channel(LEGACY_QUEUE);
        let legacy = Legacy {
            state: state.clone(),
            to_stream: tx,
        };
        let mut keys = vec![endpoint.to_owned()];
        if session_id != endpoint {
            keys.push(session_id.to_owned());
        }
        {
            let mut map = lock(&self.legacy);
            for k in &keys {
                map.insert(k.clone(), legacy.clone());
            }
        }
        self.metrics.active_sessions.inc();
        let registration = LegacyRegistration {
            sessions: self.clone(),
            keys,
            state: state.clone(),
        };
        (state, rx, registration)
    }

    /// How many sessions of each kind are known.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        (lock(&self.streamable).len(), lock(&self.legacy).len())
    }
}

/// Keeps a legacy session registered; dropping it (the stream ended) forgets the session.
#[derive(Debug)]
pub struct LegacyRegistration {
    sessions: Arc<Sessions>,
    keys: Vec<String>,
    state: State,
}

impl Drop for LegacyRegistration {
    fn drop(&mut self) {
        let mut map = lock(&self.sessions.legacy);
        for k in &self.keys {
            // Only this registration's entries (a newer stream may have reused a key).
            if map
                .get(k)
                .is_some_and(|l| Arc::ptr_eq(&l.state, &self.state))
            {
                map.remove(k);
            }
        }
        self.sessions.metrics.active_sessions.dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn streamable_sessions_are_counted_and_swept() {
        let metrics = Arc::new(Metrics::new());
        let s = Sessions::new(metrics.clone());
        let (a, created) = s.session("a");
        assert!(created);
        let (again, created) = s.session("a");
        assert!(Arc::ptr_eq(&a, &again) && !created);
        s.session("b");
        s.session("c");
        assert_eq!(metrics.active_sessions.get(), 3);
        s.end("a");
        s.end("a");
        assert_eq!(metrics.active_sessions.get(), 2);
        // "b" is held (as by an open stream); "c" is not.
        let (held, _) = s.session("b");
        s.sweep(Duration::ZERO);
        assert_eq!((metrics.active_sessions.get(), s.counts().0), (1, 1));
        drop(held);
        s.sweep(Duration::ZERO);
        assert_eq!((metrics.active_sessions.get(), s.counts().0), (0, 0));
    }

    #[test]
    fn legacy_sessions_match_by_endpoint_or_id_and_end_with_their_stream() {
        let metrics = Arc::new(Metrics::new());
        let s = Arc::new(Sessions::new(metrics.clone()));
        let (state, _rx, reg) = s.register_legacy("/message?sessionId=abc", "abc");
        assert!(Arc::ptr_eq(
            &s.legacy("/message?sessionId=abc").unwrap().state,
            &state
        ));
        assert!(s.legacy("/message?x=1&sessionId=abc").is_some());
        assert!(s.legacy("/message?sessionId=zzz").is_none());
        assert!(s.legacy("/mcp").is_none());
        assert_eq!(metrics.active_sessions.get(), 1);
        drop(reg);
        assert!(s.legacy("/message?sessionId=abc").is_none());
        assert_eq!(metrics.active_sessions.get(), 0);
    }
}
