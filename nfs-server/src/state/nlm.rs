//! NLM and NSM state: the byte-range lock manager (shared with NFSv4.1 LOCK), blocked NLM
//! requests waiting for a GRANTED callback, and the NSM monitor list: every client that took a
//! lock, kept durably so that after a restart each one is told (SM_NOTIFY) and may reclaim in
//! the shared grace period. The procedures are in `crate::nlm`.
//!
//! Plain data under locks: nothing here writes to storage. A change to the monitor list bumps
//! its change count; [`crate::state::ProtocolState`] saves the list through the `StateStore`
//! before the change is acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use backend::FileId;
use bytes::Bytes;
use nfs_proto::nlm::Nlm4Lock;

use crate::locks::{Grant, LockManager, LockOwner};

/// A client that held locks, to be told when this server restarts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Monitored {
    /// The client's NLM caller_name.
    pub name: String,
    /// The address its requests came from.
    pub addr: IpAddr,
    /// Our address as the client knows it (the `mon_name` of our SM_NOTIFY, sent from it).
    pub server_addr: IpAddr,
}

/// What NSM keeps across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsmRecord {
    /// The state number of the run that wrote it (odd while up).
    pub state: u32,
    pub clients: Vec<Monitored>,
}

impl NsmRecord {
    /// The stored form: `state N`, then one line per client, name, address and our address
    /// separated by tabs (the format of earlier versions' `<data_dir>/nsm`).
    pub fn to_doc(&self) -> Vec<u8> {
        let mut text = format!("state {}\n", self.state);
        for c in &self.clients {
            text.push_str(&format!("{}\t{}\t{}\n", c.name, c.addr, c.server_addr));
        }
        text.into_bytes()
    }

    pub fn from_doc(doc: &[u8]) -> std::io::Result<NsmRecord> {
        let bad = || std::io::Error::other("malformed NSM record (the nsm state document)");
        let text = std::str::from_utf8(doc).map_err(|_| bad())?;
        let mut lines = text.lines();
        let state = lines
            .next()
            .and_then(|l| l.strip_prefix("state "))
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        let mut clients = Vec::new();
        for l in lines {
            let mut f = l.split('\t');
            let (Some(name), Some(addr), Some(server)) = (f.next(), f.next(), f.next()) else {
                return Err(bad());
            };
            clients.push(Monitored {
                name: name.to_string(),
                addr: addr.parse().map_err(|_| bad())?,
                server_addr: server.parse().map_err(|_| bad())?,
            });
        }
        Ok(NsmRecord { state, clients })
    }
}

/// What a GRANTED callback needs about a waiting LOCK.
#[derive(Clone, Debug)]
pub struct Waiter {
    pub peer: IpAddr,
    /// Our address the LOCK came to: the GRANTED callback is sent from it.
    pub local: IpAddr,
    pub cookie: Bytes,
    pub lock: Nlm4Lock,
    pub exclusive: bool,
}

pub type WaiterKey = (FileId, LockOwner, u64, u64);

/// The monitor list and how much of it is durable.
#[derive(Debug, Default)]
struct Monitors {
    /// Clients that took locks in this run.
    current: BTreeMap<String, Monitored>,
    /// Clients of the previous run not yet notified. They stay in the saved list until they
    /// are, so a crash during the notification pass loses none of them.
    pending: Vec<Monitored>,
    /// Changes made, and how many of them are known durable.
    changes: u64,
    durable: u64,
}

/// A snapshot of the monitor list to save: its change count and its document.
pub type NsmDoc = (u64, Vec<u8>);

/// The NLM/NSM state of a server.
pub struct Nlm {
    pub locks: Mutex<LockManager>,
    pub waiters: Mutex<HashMap<WaiterKey, Waiter>>,
    monitors: Mutex<Monitors>,
    /// This run's NSM state number.
    pub state: u32,
}

impl Nlm {
    /// The state of a run that follows one which left `old`: the state number advances (odd
    /// while up; +2 tells clients we restarted), and the previous run's clients wait to be
    /// notified. The returned document must be saved before the server answers anything.
    pub fn open(old: &NsmRecord) -> (Nlm, NsmDoc) {
        let state = (old.state | 1).wrapping_add(2);
        let nlm = Nlm {
            locks: Mutex::new(LockManager::new()),
            waiters: Mutex::new(HashMap::new()),
            monitors: Mutex::new(Monitors {
                pending: old.clients.clone(),
                changes: 1,
                ..Monitors::default()
            }),
            state,
        };
        let doc = nlm.unsaved().expect("one change made above");
        (nlm, doc)
    }

    fn monitors(&self) -> std::sync::MutexGuard<'_, Monitors> {
        self.monitors.lock().expect("monitor lock poisoned")
    }

    /// The monitor list to save, if it has changes not known durable.
    pub fn unsaved(&self) -> Option<NsmDoc> {
        let m = self.monitors();
        (m.changes > m.durable).then(|| (m.changes, self.record(&m).to_doc()))
    }

    /// The document of change `changes` is durable.
    pub fn saved(&self, changes: u64) {
        let mut m = self.monitors();
        m.durable = m.durable.max(changes);
    }

    /// This run's lock holders plus the previous run's clients not yet notified.
    fn record(&self, m: &Monitors) -> NsmRecord {
        let mut clients: Vec<Monitored> = m.current.values().cloned().collect();
        for p in &m.pending {
            if !m.current.contains_key(&p.name) {
                clients.push(p.clone());
            }
        }
        NsmRecord {
            state: self.state,
            clients,
        }
    }

    /// Records a client in the monitor list the first time it takes a lock.
    pub fn monitor(&self, name: &str, peer: IpAddr, local: IpAddr) {
        let entry = Monitored {
            name: name.to_string(),
            addr: peer,
            server_addr: local,
        };
        let mut m = self.monitors();
        if m.current.get(name) == Some(&entry) {
            return;
        }
        m.current.insert(name.to_string(), entry);
        m.changes += 1;
    }

    /// A client rebooted: drop its locks, its waiters and its monitor entry. Returns the
    /// waiters that became granted.
    pub fn forget_client(&self, name: &str, addr: Option<IpAddr>) -> Vec<Grant> {
        let mut grants = Vec::new();
        let mut m = self.monitors();
        let names: Vec<String> = m
            .current
            .values()
            .filter(|c| c.name == name || Some(c.addr) == addr)
            .map(|c| c.name.clone())
            .chain(std::iter::once(name.to_string()))
            .collect();
        let mut locks = self.locks.lock().expect("lock table poisoned");
        for n in &names {
            grants.extend(locks.release_client(n));
            m.current.remove(n);
        }
        drop(locks);
        m.pending.retain(|c| !names.contains(&c.name));
        m.changes += 1;
        drop(m);
        self.waiters
            .lock()
            .expect("waiters lock poisoned")
            .retain(|(_, owner, _, _), _| !names.contains(&owner.client));
        grants
    }

    /// A floating target moved here: `clients` (its earlier owner's monitor entries for the
    /// target's addresses) join the clients to notify, and stay in the saved list until they
    /// are. Returns those still to be notified (adopted now, or by an earlier try).
    pub fn adopt(&self, clients: &[Monitored]) -> Vec<Monitored> {
        let mut m = self.monitors();
        let new: Vec<Monitored> = clients
            .iter()
            .filter(|c| {
                !m.current.contains_key(&c.name) && !m.pending.iter().any(|p| p.name == c.name)
            })
            .cloned()
            .collect();
        if !new.is_empty() {
            m.pending.extend(new);
            m.changes += 1;
        }
        let mut told: Vec<Monitored> = Vec::new();
        for c in clients {
            if m.pending.iter().any(|p| p.name == c.name) && !told.iter().any(|t| t.name == c.name)
            {
                told.push(c.clone());
            }
        }
        told
    }

    /// This node stopped serving a floating target at `addrs`: the clients that took their
    /// locks through it lose them here (they reclaim them from the next owner, which finds
    /// them in this node's saved list: they stay in it, as clients to notify, and this node
    /// notifies them itself only if it takes the target back). Returns the waiters that
    /// became granted. A client is known by its name: one that also locked through another
    /// address of this node loses those locks too.
    pub fn release_target(&self, addrs: &[IpAddr]) -> Vec<Grant> {
        let mut m = self.monitors();
        let moved: Vec<Monitored> = m
            .current
            .values()
            .filter(|c| addrs.contains(&c.server_addr))
            .cloned()
            .collect();
        if moved.is_empty() {
            return Vec::new();
        }
        let mut grants = Vec::new();
        let mut locks = self.locks.lock().expect("lock table poisoned");
        for c in &moved {
            grants.extend(locks.release_client(&c.name));
            m.current.remove(&c.name);
            m.pending.retain(|p| p.name != c.name);
            m.pending.push(c.clone());
        }
        drop(locks);
        m.changes += 1;
        drop(m);
        self.waiters
            .lock()
            .expect("waiters lock poisoned")
            .retain(|(_, owner, _, _), _| !moved.iter().any(|c| c.name == owner.client));
        grants
    }

    /// Clients of the previous run still to be notified.
    pub fn pending(&self) -> Vec<Monitored> {
        self.monitors().pending.clone()
    }

    /// `name` was notified, or never will be: it leaves the list of the previous run's clients.
    pub fn notified(&self, name: &str) {
        let mut m = self.monitors();
        m.pending.retain(|p| p.name != name);
        m.changes += 1;
    }

    /// Clients in the monitor list now (this run's and the previous run's not yet notified).
    pub fn monitored_count(&self) -> usize {
        self.record(&self.monitors()).clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> Monitored {
        Monitored {
            name: name.into(),
            addr: "10.0.0.5".parse().unwrap(),
            server_addr: "10.0.0.1".parse().unwrap(),
        }
    }

    fn at(name: &str, server: &str) -> Monitored {
        Monitored {
            server_addr: server.parse().unwrap(),
            ..client(name)
        }
    }

    #[test]
    fn adopted_clients_are_saved_until_notified_and_a_second_adoption_returns_them_again() {
        let (nlm, _) = Nlm::open(&NsmRecord::default());
        nlm.saved(1);
        nlm.monitor(
            "here",
            "10.0.0.9".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        );
        let theirs = [at("gpu01", "10.0.0.200"), at("here", "10.0.0.200")];
        // A client already monitored here is not adopted; the other is, and is saved.
        assert_eq!(nlm.adopt(&theirs), vec![at("gpu01", "10.0.0.200")]);
        let (_, doc) = nlm.unsaved().expect("a change to save");
        let saved = NsmRecord::from_doc(&doc).unwrap();
        assert!(saved.clients.contains(&at("gpu01", "10.0.0.200")));
        // A retried takeover (the addresses failed to come up) notifies them still.
        assert_eq!(nlm.adopt(&theirs), vec![at("gpu01", "10.0.0.200")]);
        nlm.notified("gpu01");
        assert_eq!(
            nlm.adopt(&theirs[..1]).len(),
            1,
            "adopted again after a later move"
        );
    }

    #[test]
    fn releasing_a_target_drops_the_locks_of_the_clients_that_came_through_it_only() {
        let (nlm, _) = Nlm::open(&NsmRecord::default());
        let float: IpAddr = "10.0.0.200".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        nlm.monitor("a", "10.0.0.5".parse().unwrap(), float);
        nlm.monitor("b", "10.0.0.6".parse().unwrap(), other);
        for (client, start) in [("a", 0), ("b", 100)] {
            let lock = crate::locks::Lock {
                owner: LockOwner {
                    client: client.into(),
                    svid: 1,
                    oh: Bytes::from_static(b"o"),
                },
                range: crate::locks::LockRange::from_offset_len(start, 10),
                kind: crate::locks::LockKind::Write,
            };
            let file = FileId {
                ino: 7,
                generation: 1,
            };
            let got = nlm.locks.lock().unwrap().lock(file, lock, false);
            assert!(matches!(got, crate::locks::LockOutcome::Granted), "{got:?}");
        }
        nlm.release_target(&[float]);
        assert_eq!(nlm.locks.lock().unwrap().held_count(), 1);
        // "a" stays in the saved list, for the next owner to find and notify.
        let (_, doc) = nlm.unsaved().expect("a change to save");
        let saved = NsmRecord::from_doc(&doc).unwrap();
        assert_eq!(saved.clients.len(), 2);
        assert_eq!(
            nlm.pending(),
            vec![Monitored {
                name: "a".into(),
                addr: "10.0.0.5".parse().unwrap(),
                server_addr: float,
            }]
        );
    }

    #[test]
    fn an_nsm_record_round_trips_through_its_document() {
        let r = NsmRecord {
            state: 5,
            clients: vec![client("gpu01")],
        };
        assert_eq!(NsmRecord::from_doc(&r.to_doc()).unwrap(), r);
        assert!(NsmRecord::from_doc(b"nonsense").is_err());
    }

    #[test]
    fn a_restart_advances_the_state_number_keeps_it_odd_and_must_save_it() {
        let (nlm, (v, doc)) = Nlm::open(&NsmRecord {
            state: 4,
            clients: vec![client("c")],
        });
        assert_eq!(nlm.state, 7);
        let saved = NsmRecord::from_doc(&doc).unwrap();
        assert_eq!(saved.state, 7);
        assert_eq!(saved.clients, vec![client("c")], "kept until notified");
        nlm.saved(v);
        assert!(nlm.unsaved().is_none());
    }

    #[test]
    fn a_new_lock_holder_is_unsaved_until_its_document_is_durable() {
        let (nlm, (v, _)) = Nlm::open(&NsmRecord::default());
        nlm.saved(v);
        nlm.monitor(
            "c",
            "10.0.0.5".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        );
        let (v2, doc) = nlm.unsaved().expect("a change to save");
        assert_eq!(
            NsmRecord::from_doc(&doc).unwrap().clients,
            vec![client("c")]
        );
        nlm.monitor(
            "c",
            "10.0.0.5".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        );
        assert_eq!(
            nlm.unsaved().unwrap().0,
            v2,
            "the same entry again changes nothing"
        );
        nlm.saved(v2);
        assert!(nlm.unsaved().is_none());
        nlm.notified("c");
        nlm.forget_client("c", None);
        assert!(NsmRecord::from_doc(&nlm.unsaved().unwrap().1)
            .unwrap()
            .clients
            .is_empty());
    }
}
