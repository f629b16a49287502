//! The `events` ring buffer: decoding records into [`KernelEvent`]s and delivering them on a
//! tokio channel (polled through `AsyncFd`; aya 0.14 has no async ring buffer).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use aya::maps::{MapData, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::layout::{
    KIND_BIND, KIND_CONNECT, KIND_EXEC, KIND_FILE_OPEN, MAX_DEPTH, REASON_DEPTH, RawEvent,
    VERDICT_ALLOWED, VERDICT_DENIED, VERDICT_REWRITTEN,
};
use crate::model::{EventKind, Inode, KernelEvent, Slot, SlotRules, Verdict};

/// The paths of the installed file and exec rules, by (slot, inode), so that an event names the
/// rule's path. Shared by [`super::BpfEnforcer`] (which fills it) and [`EventSource`].
#[derive(Clone, Debug, Default)]
pub struct PathIndex(Arc<Mutex<HashMap<(Slot, Inode), String>>>);

impl PathIndex {
    pub(super) fn set_slot(&self, slot: Slot, rules: &SlotRules) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|(s, _), _| *s != slot);
        for d in rules.files.iter().chain(&rules.exec) {
            m.insert((slot, d.inode), d.path.clone());
        }
    }

    fn get(&self, slot: Slot, inode: Inode) -> Option<String> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(slot, inode)).cloned()
    }
}

/// The size of a record written by programs of layout version 1 (no `guard_id`), which a
/// restarted agent may still find in the pinned ring buffer.
const V1_RECORD: usize = 96;

impl RawEvent {
    /// Reads one record (native endianness, the C layout) without `unsafe`. A version 1 record
    /// (96 bytes, no `guard_id`) reads with `guard_id` = `cgroup_id`: those programs matched the
    /// task's own cgroup only.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < V1_RECORD {
            return None;
        }
        let u64_at = |o: usize| {
            b.get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_ne_bytes)
        };
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        let u16_at = |o: usize| {
            b.get(o..o + 2)
                .and_then(|s| s.try_into().ok())
                .map(u16::from_ne_bytes)
        };
        Some(RawEvent {
            cgroup_id: u64_at(0)?,
            dev: u64_at(8)?,
            ino: u64_at(16)?,
            rule_dev: u64_at(24)?,
            rule_ino: u64_at(32)?,
            kind: u32_at(40)?,
            verdict: u32_at(44)?,
            slot: u32_at(48)?,
            pid: u32_at(52)?,
            reason: u32_at(56)?,
            family: u16_at(60)?,
            port: u16_at(62)?,
            addr: b.get(64..80)?.try_into().ok()?,
            comm: b.get(80..96)?.try_into().ok()?,
            guard_id: if b.len() >= size_of::<RawEvent>() {
                u64_at(96)?
            } else {
                u64_at(0)?
            },
        })
    }
}

/// Decodes one record; `None` for kinds or verdicts this build does not know.
pub fn decode(raw: &RawEvent, paths: &PathIndex) -> Option<KernelEvent> {
    let kind = match raw.kind {
        KIND_FILE_OPEN => EventKind::FileOpen,
        KIND_EXEC => EventKind::Exec,
        KIND_CONNECT => EventKind::Connect,
        KIND_BIND => EventKind::Bind,
        _ => return None,
    };
    let verdict = match raw.verdict {
        VERDICT_DENIED => Verdict::Denied,
        VERDICT_ALLOWED => Verdict::Allowed,
        VERDICT_REWRITTEN => Verdict::Rewritten,
        _ => return None,
    };
    let comm_len = raw
        .comm
        .iter()
        .position(|c| *c == 0)
        .unwrap_or(raw.comm.len());
    let mut ev = KernelEvent {
        kind,
        verdict,
        cgroup_id: raw.cgroup_id,
        guard_cgroup_id: raw.guard_id,
        slot: raw.slot,
        pid: raw.pid,
        comm: String::from_utf8_lossy(&raw.comm[..comm_len]).into_owned(),
        path: None,
        inode: None,
        addr: None,
        port: None,
    };
    match kind {
        EventKind::FileOpen | EventKind::Exec => {
            ev.inode = Some((raw.dev, raw.ino));
            ev.path = if raw.reason == REASON_DEPTH {
                Some(format!(
                    "(not checked: more than {MAX_DEPTH} parent directories, denied because a \
                     directory rule applies)"
                ))
            } else {
                let rule = Inode {
                    dev: raw.rule_dev,
                    ino: raw.rule_ino,
                };
                paths.get(raw.slot, rule)
            };
        }
        EventKind::Connect | EventKind::Bind => {
            ev.addr = match raw.family {
                4 => {
                    let [a, b, c, d, ..] = raw.addr;
                    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
                }
                6 => Some(IpAddr::V6(Ipv6Addr::from(raw.addr))),
                _ => None,
            };
            ev.port = Some(raw.port);
        }
    }
    Some(ev)
}

/// The ring buffer, ready to be read (synchronously with [`EventSource::drain`], or as a task
/// with [`EventSource::run`]).
pub struct EventSource {
    pub(super) ring: RingBuf<MapData>,
    pub(super) paths: PathIndex,
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource").finish_non_exhaustive()
    }
}

fn drain_ring(ring: &mut RingBuf<MapData>, paths: &PathIndex, out: &mut Vec<KernelEvent>) {
    while let Some(item) = ring.next() {
        if let Some(ev) = RawEvent::from_bytes(&item).and_then(|r| decode(&r, paths)) {
            out.push(ev);
        }
    }
}

impl EventSource {
    /// Every record waiting now.
    pub fn drain(&mut self) -> Vec<KernelEvent> {
        let mut out = Vec::new();
        drain_ring(&mut self.ring, &self.paths, &mut out);
        out
    }

    /// Delivers events on `tx` until the receiver is dropped (returns `Ok`) or polling fails.
    /// Must run inside a tokio runtime (it registers the ring buffer's fd with the reactor).
    pub async fn run(self, tx: mpsc::Sender<KernelEvent>) -> std::io::Result<()> {
        let paths = self.paths;
        // `with_interest` is deprecated in favour of the `unsafe` `register_with_interest` (whose
        // contract is that the fd stays open and unreplaced while registered). It holds here: the
        // AsyncFd owns the RingBuf, which owns its map fd for the AsyncFd's whole life. The safe
        // constructor keeps this crate free of `unsafe` beyond the aya Pod impls.
        #[allow(deprecated)]
        let mut fd = AsyncFd::with_interest(self.ring, Interest::READABLE)?;
        let mut batch = Vec::new();
        loop {
            let mut guard = fd.readable_mut().await?;
            drain_ring(guard.get_inner_mut(), &paths, &mut batch);
            guard.clear_ready();
            drop(guard);
            for ev in batch.drain(..) {
                if tx.send(ev).await.is_err() {
                    return Ok(());
                }
            }
        }
    }

    /// Spawns [`EventSource::run`] and returns the receiving end (capacity `cap`).
    pub fn spawn(
        self,
        cap: usize,
    ) -> (
        mpsc::Receiver<KernelEvent>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let (tx, rx) = mpsc::channel(cap);
        (rx, tokio::spawn(self.run(tx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeniedInode;

    fn raw_bytes(r: &RawEvent) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [r.cgroup_id, r.dev, r.ino, r.rule_dev, r.rule_ino] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        for v in [r.kind, r.verdict, r.slot, r.pid, r.reason] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&r.family.to_ne_bytes());
        b.extend_from_slice(&r.port.to_ne_bytes());
        b.extend_from_slice(&r.addr);
        b.extend_from_slice(&r.comm);
        b.extend_from_slice(&r.guard_id.to_ne_bytes());
        b
    }

    #[test]
    fn decodes_a_connect() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        let raw = RawEvent {
            cgroup_id: 42,
            guard_id: 7,
            kind: KIND_CONNECT,
            verdict: VERDICT_DENIED,
            slot: 1,
            pid: 99,
            family: 4,
            port: 443,
            addr,
            comm,
            ..RawEvent::default()
        };
        let back = RawEvent::from_bytes(&raw_bytes(&raw)).expect("decodes");
        let ev = decode(&back, &PathIndex::default()).expect("known kind");
        assert_eq!(ev.kind, EventKind::Connect);
        assert_eq!(ev.verdict, Verdict::Denied);
        assert_eq!((ev.cgroup_id, ev.slot, ev.pid), (42, 1, 99));
        assert_eq!(ev.guard_cgroup_id, 7, "matched through an ancestor");
        assert_eq!(ev.comm, "curl");
        assert_eq!(ev.addr, Some("10.1.2.3".parse().expect("ip")));
        assert_eq!(ev.port, Some(443));
        assert_eq!(ev.path, None);
    }

    #[test]
    fn file_events_name_the_rule() {
        let paths = PathIndex::default();
        let rules = SlotRules {
            files: vec![DeniedInode {
                path: "/secrets".into(),
                inode: Inode { dev: 7, ino: 8 },
                subtree: true,
            }],
            ..SlotRules::default()
        };
        paths.set_slot(2, &rules);
        let raw = RawEvent {
            kind: KIND_FILE_OPEN,
            verdict: VERDICT_DENIED,
            slot: 2,
            dev: 7,
            ino: 100,
            rule_dev: 7,
            rule_ino: 8,
            ..RawEvent::default()
        };
        let ev = decode(&raw, &paths).expect("known kind");
        assert_eq!(ev.path.as_deref(), Some("/secrets"));
        assert_eq!(ev.inode, Some((7, 100)));
        assert_eq!(ev.addr, None);
        assert!(RawEvent::from_bytes(&[0u8; 95]).is_none());
    }

    /// Records of the previous layout (pinned ring buffer, older programs still attached while a
    /// new agent starts) decode, guarded by their own cgroup.
    #[test]
    fn version_1_records_decode() {
        let raw = RawEvent {
            cgroup_id: 42,
            guard_id: 7,
            kind: KIND_BIND,
            verdict: VERDICT_REWRITTEN,
            family: 4,
            port: 8080,
            ..RawEvent::default()
        };
        let bytes = raw_bytes(&raw);
        let old = RawEvent::from_bytes(&bytes[..V1_RECORD]).expect("decodes");
        assert_eq!((old.cgroup_id, old.guard_id), (42, 42));
        assert_eq!(old.port, 8080);
        let new = RawEvent::from_bytes(&bytes).expect("decodes");
        assert_eq!((new.cgroup_id, new.guard_id), (42, 7));
    }
}
