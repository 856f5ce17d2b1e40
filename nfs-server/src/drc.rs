//! Duplicate request cache for non-idempotent NFSv3 calls.
//!
//! A client that loses a reply (dropped connection, timeout) retransmits the call with the same
//! xid. Running a REMOVE or RENAME twice turns success into NOENT, so for those calls we keep the
//! reply and send it again. Entries are keyed by client address (without the port: a
//! retransmission often arrives on a new connection), xid, program, version, procedure and a
//! hash of the arguments (so a reused xid with other arguments is not mistaken for a retry).
//!
//! Bounded: at most `capacity` entries, the oldest evicted first.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

use bytes::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DrcKey {
    pub client: IpAddr,
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub args_hash: u64,
}

impl DrcKey {
    pub fn new(client: IpAddr, xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        args.hash(&mut h);
        DrcKey {
            client,
            xid,
            prog,
            vers,
            proc_,
            args_hash: h.finish(),
        }
    }
}

#[derive(Clone, Debug)]
enum Entry {
    InProgress,
    Done(Bytes),
}

/// What to do with an incoming call.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// First time seen: execute it, then call [`Drc::finish`].
    New,
    /// The original is still executing: drop this copy (the client will get the original reply).
    InProgress,
    /// Already answered: send this reply again (the whole RPC reply, without record mark).
    Replay(Bytes),
}

#[derive(Debug)]
pub struct Drc {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<DrcKey, Entry>,
    order: VecDeque<DrcKey>,
}

impl Drc {
    pub fn new(capacity: usize) -> Drc {
        Drc {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn begin(&self, key: DrcKey) -> Lookup {
        let mut g = self.inner.lock().expect("drc lock poisoned");
        match g.map.get(&key) {
            Some(Entry::InProgress) => return Lookup::InProgress,
            Some(Entry::Done(b)) => return Lookup::Replay(b.clone()),
            None => {}
        }
        while g.order.len() >= self.capacity {
            match g.order.pop_front() {
                Some(old) => {
                    g.map.remove(&old);
                }
                None => break,
            }
        }
        g.map.insert(key, Entry::InProgress);
        g.order.push_back(key);
        Lookup::New
    }

    /// A call [`Drc::begin`] returned `New` for, forgotten unless [`Running::finish`] records
    /// its reply: a call abandoned half-way (its future dropped) must not leave an entry that
    /// drops every retransmission of it as "still running", for ever.
    pub fn running(&self, key: DrcKey) -> Running<'_> {
        Running {
            drc: self,
            key,
            done: false,
        }
    }

    /// Records the reply of a call that [`Drc::begin`] returned `New` for.
    fn finish(&self, key: DrcKey, reply: Bytes) {
        let mut g = self.inner.lock().expect("drc lock poisoned");
        if let Some(e) = g.map.get_mut(&key) {
            *e = Entry::Done(reply);
        }
    }

    /// Forgets a call whose execution produced no reply to cache.
    fn abandon(&self, key: DrcKey) {
        let mut g = self.inner.lock().expect("drc lock poisoned");
        if matches!(g.map.get(&key), Some(Entry::InProgress)) {
            g.map.remove(&key);
            // Its place in the eviction order too: left there, a retransmission's new entry
            // would be evicted early by the stale place (rare: O(capacity) is fine).
            if let Some(at) = g.order.iter().rposition(|k| *k == key) {
                g.order.remove(at);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("drc lock poisoned").map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// See [`Drc::running`].
pub struct Running<'a> {
    drc: &'a Drc,
    key: DrcKey,
    done: bool,
}

impl Running<'_> {
    /// Records the call's reply for its retransmissions.
    pub fn finish(mut self, reply: Bytes) {
        self.done = true;
        self.drc.finish(self.key, reply);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.drc.abandon(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(xid: u32) -> DrcKey {
        DrcKey::new("10.0.0.1".parse().unwrap(), xid, 100003, 3, 12, b"args")
    }

    #[test]
    fn retransmission_after_the_reply_replays_it() {
        let d = Drc::new(4);
        assert_eq!(d.begin(key(1)), Lookup::New);
        d.finish(key(1), Bytes::from_static(b"reply"));
        assert_eq!(
            d.begin(key(1)),
            Lookup::Replay(Bytes::from_static(b"reply"))
        );
    }

    #[test]
    fn retransmission_during_execution_is_dropped() {
        let d = Drc::new(4);
        assert_eq!(d.begin(key(1)), Lookup::New);
        assert_eq!(d.begin(key(1)), Lookup::InProgress);
    }

    #[test]
    fn a_call_abandoned_while_running_is_forgotten_so_its_retransmission_runs() {
        let d = Drc::new(4);
        assert_eq!(d.begin(key(1)), Lookup::New);
        drop(d.running(key(1)));
        assert_eq!(d.begin(key(1)), Lookup::New);
    }

    #[test]
    fn an_abandoned_call_leaves_no_stale_place_in_the_eviction_order() {
        let d = Drc::new(2);
        assert_eq!(d.begin(key(1)), Lookup::New);
        drop(d.running(key(1)));
        assert_eq!(d.begin(key(1)), Lookup::New);
        d.running(key(1)).finish(Bytes::from_static(b"one"));
        assert_eq!(d.begin(key(2)), Lookup::New);
        d.running(key(2)).finish(Bytes::new());
        assert_eq!(
            d.begin(key(1)),
            Lookup::Replay(Bytes::from_static(b"one")),
            "the retry's reply is still cached: the cache holds two"
        );
    }

    #[test]
    fn a_finished_call_is_replayed_after_its_guard_is_gone() {
        let d = Drc::new(4);
        assert_eq!(d.begin(key(1)), Lookup::New);
        d.running(key(1)).finish(Bytes::from_static(b"reply"));
        assert_eq!(
            d.begin(key(1)),
            Lookup::Replay(Bytes::from_static(b"reply"))
        );
    }

    #[test]
    fn same_xid_with_other_arguments_is_a_new_call() {
        let d = Drc::new(4);
        d.begin(key(1));
        d.finish(key(1), Bytes::new());
        let other = DrcKey::new("10.0.0.1".parse().unwrap(), 1, 100003, 3, 12, b"other");
        assert_eq!(d.begin(other), Lookup::New);
    }

    #[test]
    fn cache_never_holds_more_than_its_capacity() {
        let d = Drc::new(3);
        for x in 0..10 {
            d.begin(key(x));
            d.finish(key(x), Bytes::new());
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.begin(key(0)), Lookup::New);
    }
}
