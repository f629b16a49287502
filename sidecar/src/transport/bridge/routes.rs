//! Where a session's server messages go: the routing table of one session.
//!
//! * A response goes to the POST that carried its request (ids compared as canonical JSON); when
//!   the POST has no request left, its entry is dropped, which ends its stream once the last message
//!   is written.
//! * A request or notification from the server goes, in this order, to the POST whose request named
//!   its `progressToken`; to the oldest POST still waiting that answers as SSE (stdio carries no
//!   other relation, and clients handle a server message on any of their streams); to the session's
//!   GET stream; else into a bounded backlog that a GET stream, when one opens, receives first.
//!
//! Senders are cloned out of the table and used after its lock is released.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use tokio::sync::mpsc;

/// Server messages kept for a GET stream not yet open; beyond it the oldest are dropped.
pub const BACKLOG: usize = 256;
/// A stream's queue: room for a full backlog plus messages routed while it is written.
pub const STREAM_QUEUE: usize = BACKLOG + 64;

/// Whole JSON-RPC messages into one HTTP answer.
pub type Tx = mpsc::Sender<String>;

#[derive(Debug)]
struct Post {
    tx: Tx,
    /// Whether the answer is an SSE stream (else one JSON body, responses only).
    sse: bool,
    /// Requests still unanswered (canonical ids).
    ids: HashSet<String>,
    tokens: Vec<String>,
}

/// Where a server request or notification goes.
#[derive(Debug)]
pub enum Target {
    Post(Tx),
    Get(Tx),
    /// Kept for a GET stream; `dropped` tells whether an older message was dropped to make room.
    Backlog {
        dropped: bool,
    },
}

/// A session's routing table.
#[derive(Debug, Default)]
pub struct Routes {
    next_post: u64,
    /// By opening order, so the first is the oldest.
    posts: BTreeMap<u64, Post>,
    pending: HashMap<String, u64>,
    progress: HashMap<String, u64>,
    get: Option<Tx>,
    backlog: VecDeque<String>,
    /// The session ended: nothing opens any more.
    pub ended: bool,
}

impl Routes {
    /// Registers a POST awaiting answers to `ids`; `None` once the session ended. An id already
    /// pending moves to this POST (a client that reuses an id has given up on the old request).
    pub fn open(
        &mut self,
        ids: Vec<String>,
        tokens: Vec<String>,
        tx: Tx,
        sse: bool,
    ) -> Option<u64> {
        if self.ended {
            return None;
        }
        let key = self.next_post;
        self.next_post += 1;
        for id in &ids {
            if let Some(old) = self.pending.insert(id.clone(), key) {
                self.forget_id(old, id);
            }
        }
        for t in &tokens {
            self.progress.insert(t.clone(), key);
        }
        let ids = ids.into_iter().collect();
        self.posts.insert(
            key,
            Post {
                tx,
                sse,
                ids,
                tokens,
            },
        );
        Some(key)
    }

    /// Forgets POST `key` (its client went away, or it is done).
    pub fn close(&mut self, key: u64) {
        if let Some(post) = self.posts.remove(&key) {
            for id in post.ids {
                self.pending.remove(&id);
            }
            for t in post.tokens {
                if self.progress.get(&t) == Some(&key) {
                    self.progress.remove(&t);
                }
            }
        }
    }

    /// Takes `id` out of POST `key`, closing the POST when it has no request left.
    fn forget_id(&mut self, key: u64, id: &str) {
        let empty = self.posts.get_mut(&key).is_some_and(|p| {
            p.ids.remove(id);
            p.ids.is_empty()
        });
        if empty {
            self.close(key);
        }
    }

    /// The stream for the response to `id`, if a POST awaits it; the id is no longer pending.
    pub fn response(&mut self, id: &str) -> Option<Tx> {
        let key = self.pending.remove(id)?;
        let tx = self.posts.get(&key)?.tx.clone();
        self.forget_id(key, id);
        Some(tx)
    }

    /// The client cancelled request `id`: the server need not answer it, so no POST waits for it.
    pub fn cancel(&mut self, id: &str) {
        if let Some(key) = self.pending.remove(id) {
            self.forget_id(key, id);
        }
    }

    /// Where a server request or notification goes (see the module doc). A message for the backlog
    /// is stored here.
    pub fn related(&mut self, token: Option<&str>, message: &str) -> Target {
        let by_token = token
            .and_then(|t| self.progress.get(t))
            .and_then(|k| self.posts.get(k))
            .filter(|p| p.sse && !p.tx.is_closed());
        let post = by_token.or_else(|| {
            self.posts
                .values()
                .find(|p| p.sse && !p.ids.is_empty() && !p.tx.is_closed())
        });
        if let Some(p) = post {
            return Target::Post(p.tx.clone());
        }
        match &self.get {
            Some(tx) if !tx.is_closed() => Target::Get(tx.clone()),
            _ => {
                self.get = None;
                Target::Backlog {
                    dropped: self.keep(message.to_owned()),
                }
            }
        }
    }

    /// Keeps `message` for a GET stream; true if the oldest was dropped for it.
    pub fn keep(&mut self, message: String) -> bool {
        self.backlog.push_back(message);
        if self.backlog.len() > BACKLOG {
            self.backlog.pop_front();
            return true;
        }
        false
    }

    /// Makes `tx` the GET stream (replacing an older one, which ends), with the backlog queued
    /// first. False once the session ended.
    pub fn open_get(&mut self, tx: Tx) -> bool {
        if self.ended {
            return false;
        }
        for message in self.backlog.drain(..) {
            // The queue is larger than the backlog, so this only fails for a vanished client.
            let _ = tx.try_send(message);
        }
        self.get = Some(tx);
        true
    }

    /// Whether anything is in flight: a POST waiting for answers, or an open GET stream.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty() || self.get.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Ends the session: every POST's stream and the ids it still awaits; the GET stream is
    /// dropped (so it ends), and nothing opens any more.
    pub fn end(&mut self) -> Vec<(Tx, Vec<String>)> {
        self.ended = true;
        self.get = None;
        self.backlog.clear();
        self.pending.clear();
        self.progress.clear();
        std::mem::take(&mut self.posts)
            .into_values()
            .map(|p| (p.tx, p.ids.into_iter().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chan() -> (Tx, mpsc::Receiver<String>) {
        mpsc::channel(STREAM_QUEUE)
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn responses_go_to_their_post_which_closes_after_the_last() {
        let mut r = Routes::default();
        let (tx, mut rx) = chan();
        r.open(ids(&["1", "2"]), vec![], tx, true).unwrap();
        assert!(r.busy());
        r.response("1").unwrap().try_send("a".into()).unwrap();
        assert!(r.response("1").is_none(), "answered once");
        r.response("2").unwrap().try_send("b".into()).unwrap();
        assert!(!r.busy());
        assert_eq!(rx.try_recv().unwrap(), "a");
        assert_eq!(rx.try_recv().unwrap(), "b");
        assert!(matches!(
            rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn server_messages_prefer_the_progress_post_then_the_oldest_sse_post_then_get() {
        let mut r = Routes::default();
        let (json_tx, _json) = chan();
        let (old_tx, _old) = chan();
        let (new_tx, _new) = chan();
        r.open(ids(&["0"]), vec![], json_tx, false).unwrap();
        r.open(ids(&["1"]), vec![], old_tx.clone(), true).unwrap();
        r.open(ids(&["2"]), ids(&["tok"]), new_tx.clone(), true)
            .unwrap();
        let Target::Post(t) = r.related(Some("tok"), "m") else {
            panic!()
        };
        assert!(t.same_channel(&new_tx));
        let Target::Post(t) = r.related(None, "m") else {
            panic!()
        };
        assert!(
            t.same_channel(&old_tx),
            "the oldest SSE post, not the JSON one"
        );
        r.response("1");
        r.response("2");
        let (get_tx, _get) = chan();
        assert!(matches!(
            r.related(None, "kept"),
            Target::Backlog { dropped: false }
        ));
        assert!(r.open_get(get_tx.clone()));
        assert!(matches!(r.related(None, "m"), Target::Get(t) if t.same_channel(&get_tx)));
    }

    #[test]
    fn the_backlog_is_bounded_and_delivered_first() {
        let mut r = Routes::default();
        for i in 0..BACKLOG {
            assert!(matches!(
                r.related(None, &i.to_string()),
                Target::Backlog { dropped: false }
            ));
        }
        assert!(matches!(
            r.related(None, "last"),
            Target::Backlog { dropped: true }
        ));
        let (tx, mut rx) = chan();
        r.open_get(tx);
        assert_eq!(rx.try_recv().unwrap(), "1", "the oldest was dropped");
    }

    #[test]
    fn reused_and_cancelled_ids_release_their_posts_and_end_fails_the_rest() {
        let mut r = Routes::default();
        let (a_tx, mut a) = chan();
        let (b_tx, _b) = chan();
        r.open(ids(&["7"]), vec![], a_tx, true).unwrap();
        r.open(ids(&["7", "8"]), vec![], b_tx.clone(), true)
            .unwrap();
        assert!(matches!(
            a.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        r.cancel("8");
        let owed = r.end();
        assert_eq!(owed.len(), 1);
        assert!(owed[0].0.same_channel(&b_tx));
        assert_eq!(owed[0].1, ids(&["7"]));
        let (c_tx, _c) = chan();
        assert!(r.open(ids(&["9"]), vec![], c_tx.clone(), true).is_none());
        assert!(!r.open_get(c_tx));
    }
}
