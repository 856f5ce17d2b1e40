//! NFSv3 locking: NLM v4 procedures on top of the shared [`LockManager`], and the server's own
//! NSM (status monitor), so a Linux client mounts without `nolock`.
//!
//! * Locks belong to `(caller_name, svid, oh)`, never to a connection: with `nconnect`, a dropped
//!   connection releases nothing. A client's locks go when it says it rebooted (SM_NOTIFY, or
//!   NLM FREE_ALL).
//! * Blocking LOCKs that must wait answer BLOCKED. When the holder unlocks, the waiter is granted
//!   in the lock table and told with a GRANTED callback to its lockd. If that callback is lost,
//!   the client's periodic retransmission of the LOCK finds the lock already its own.
//! * Every client that takes a lock is recorded in a monitor list persisted through
//!   [`NsmStore`]. After a restart the server's NSM state number advances, each recorded client
//!   gets SM_NOTIFY, and a grace period admits only reclaims so that no lock is stolen before its
//!   holder reclaims it. With nobody to notify, there is no grace period.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backend::{FileId, Store};
use bytes::Bytes;
use nfs_proto::nlm::{self, nlmproc, Nlm4Holder, Nlm4Lock, Nlm4Stat, NlmArgs, NlmReply, NsmArgs};
use nfs_proto::portmap as pm;
use nfs_proto::rpc::AuthStat;
use nfs_proto::v3::NfsFh3;
use nfs_proto::xdr::{Encode, Writer};

use crate::locks::{Grant, Lock, LockKind, LockManager, LockOutcome, LockOwner, LockRange};
use crate::rpc_client;
use crate::server::{Request, Server};
use crate::v3::Failure;

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
    /// The state number of the previous run (odd while up).
    pub state: u32,
    pub clients: Vec<Monitored>,
}

/// Where NSM state lives. The HA layer will replicate it; a single node keeps it in files.
pub trait NsmStore: Send + Sync + 'static {
    fn load(&self) -> std::io::Result<NsmRecord>;
    /// Durable when it returns.
    fn save(&self, record: &NsmRecord) -> std::io::Result<()>;
}

/// NSM state in `<data_dir>/nsm`, one line per client, replaced atomically.
pub struct FileNsmStore {
    path: PathBuf,
}

impl FileNsmStore {
    pub fn new(data_dir: &std::path::Path) -> FileNsmStore {
        FileNsmStore {
            path: data_dir.join("nsm"),
        }
    }
}

impl NsmStore for FileNsmStore {
    fn load(&self) -> std::io::Result<NsmRecord> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NsmRecord::default()),
            Err(e) => return Err(e),
        };
        let bad =
            || std::io::Error::other(format!("{}: malformed NSM record", self.path.display()));
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

    fn save(&self, record: &NsmRecord) -> std::io::Result<()> {
        let mut text = format!("state {}\n", record.state);
        for c in &record.clients {
            text.push_str(&format!("{}\t{}\t{}\n", c.name, c.addr, c.server_addr));
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// NSM state for a store that keeps nothing (`store = "memory"`).
#[derive(Default)]
pub struct MemNsmStore(Mutex<NsmRecord>);

impl NsmStore for MemNsmStore {
    fn load(&self) -> std::io::Result<NsmRecord> {
        Ok(self.0.lock().expect("nsm lock poisoned").clone())
    }

    fn save(&self, record: &NsmRecord) -> std::io::Result<()> {
        *self.0.lock().expect("nsm lock poisoned") = record.clone();
        Ok(())
    }
}

/// What a GRANTED callback needs about a waiting LOCK.
#[derive(Clone, Debug)]
struct Waiter {
    peer: IpAddr,
    cookie: Bytes,
    lock: Nlm4Lock,
    exclusive: bool,
}

type WaiterKey = (FileId, LockOwner, u64, u64);

/// The NLM/NSM state of a server.
pub struct Nlm {
    pub locks: Mutex<LockManager>,
    waiters: Mutex<HashMap<WaiterKey, Waiter>>,
    /// Clients that took locks in this run.
    monitored: Mutex<BTreeMap<String, Monitored>>,
    /// Clients of the previous run not yet notified. They stay in the persisted list until
    /// they are, so a crash during the notification pass loses none of them.
    pending: Mutex<Vec<Monitored>>,
    grace_until: Mutex<Option<Instant>>,
    /// This run's NSM state number.
    pub state: u32,
    store: Box<dyn NsmStore>,
}

impl Nlm {
    /// Loads NSM state, advances the state number, and starts a grace period if some client held
    /// locks before the restart.
    pub fn open(store: Box<dyn NsmStore>, grace: Duration) -> std::io::Result<Nlm> {
        let old = store.load()?;
        // Odd while up; advancing by 2 keeps it odd and tells clients we restarted.
        let state = (old.state | 1).wrapping_add(2);
        let record = NsmRecord {
            state,
            clients: old.clients.clone(),
        };
        store.save(&record)?;
        let grace_until =
            (!old.clients.is_empty() && !grace.is_zero()).then(|| Instant::now() + grace);
        if let Some(_until) = grace_until {
            tracing::info!(
                clients = old.clients.len(),
                seconds = grace.as_secs(),
                "NLM grace period: only lock reclaims are accepted"
            );
        }
        Ok(Nlm {
            locks: Mutex::new(LockManager::new()),
            waiters: Mutex::new(HashMap::new()),
            monitored: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(old.clients),
            grace_until: Mutex::new(grace_until),
            state,
            store,
        })
    }

    pub fn in_grace(&self) -> bool {
        let mut g = self.grace_until.lock().expect("grace lock poisoned");
        match *g {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                tracing::info!("NLM grace period over");
                *g = None;
                false
            }
            None => false,
        }
    }

    /// Records a client in the monitor list (durably) the first time it takes a lock.
    fn monitor(&self, name: &str, peer: IpAddr, local: IpAddr) {
        let entry = Monitored {
            name: name.to_string(),
            addr: peer,
            server_addr: local,
        };
        let mut m = self.monitored.lock().expect("monitor lock poisoned");
        if m.get(name) == Some(&entry) {
            return;
        }
        m.insert(name.to_string(), entry);
        self.persist(&m);
    }

    /// Saves this run's lock holders plus the previous run's clients not yet notified.
    fn persist(&self, m: &BTreeMap<String, Monitored>) {
        let mut clients: Vec<Monitored> = m.values().cloned().collect();
        for p in self.pending.lock().expect("pending lock poisoned").iter() {
            if !m.contains_key(&p.name) {
                clients.push(p.clone());
            }
        }
        let record = NsmRecord {
            state: self.state,
            clients,
        };
        if let Err(e) = self.store.save(&record) {
            // Locks still work; only the notification after a restart would miss this client.
            tracing::error!("cannot persist the NSM monitor list: {e}");
        }
    }

    /// A client rebooted: drop its locks and its monitor entry.
    fn forget_client(&self, name: &str, addr: Option<IpAddr>) -> Vec<Grant> {
        let mut grants = Vec::new();
        let mut m = self.monitored.lock().expect("monitor lock poisoned");
        let names: Vec<String> = m
            .values()
            .filter(|c| c.name == name || Some(c.addr) == addr)
            .map(|c| c.name.clone())
            .chain(std::iter::once(name.to_string()))
            .collect();
        let mut locks = self.locks.lock().expect("lock table poisoned");
        for n in &names {
            grants.extend(locks.release_client(n));
            m.remove(n);
        }
        drop(locks);
        self.pending
            .lock()
            .expect("pending lock poisoned")
            .retain(|c| !names.contains(&c.name));
        self.waiters
            .lock()
            .expect("waiters lock poisoned")
            .retain(|(_, owner, _, _), _| !names.contains(&owner.client));
        self.persist(&m);
        grants
    }
}

fn owner_of(l: &Nlm4Lock) -> LockOwner {
    LockOwner {
        client: String::from_utf8_lossy(&l.caller_name).into_owned(),
        svid: l.svid,
        // Copied: held locks must not pin the received record.
        oh: bytes::Bytes::copy_from_slice(&l.oh),
    }
}

fn lock_of(l: &Nlm4Lock, exclusive: bool) -> Lock {
    Lock {
        owner: owner_of(l),
        kind: if exclusive {
            LockKind::Write
        } else {
            LockKind::Read
        },
        range: LockRange::from_offset_len(l.offset, l.len),
    }
}

fn holder(l: &Lock) -> Nlm4Holder {
    let (offset, len) = l.range.offset_len();
    Nlm4Holder {
        exclusive: l.kind == LockKind::Write,
        svid: l.owner.svid,
        oh: l.owner.oh.clone(),
        offset,
        len,
    }
}

impl<S: Store> Server<S> {
    /// Runs one NLM v4 call. `Err` is an RPC-level auth error.
    pub async fn nlm(
        &self,
        req: &Request,
        proc_: u32,
        args: NlmArgs,
    ) -> Result<NlmReply, AuthStat> {
        let reply = match args {
            NlmArgs::Null => NlmReply::Void,
            NlmArgs::Test {
                cookie,
                exclusive,
                lock,
            } if proc_ == nlmproc::TEST || proc_ == nlmproc::TEST_MSG => {
                let (stat, h) = self.nlm_test(req, &lock, exclusive)?;
                NlmReply::Test {
                    cookie,
                    stat,
                    holder: h,
                }
            }
            // GRANTED(_MSG) is for clients; a server has nothing waiting on it.
            NlmArgs::Test { cookie, .. } => NlmReply::Res {
                cookie,
                stat: Nlm4Stat::Denied,
            },
            NlmArgs::Lock {
                cookie,
                block,
                exclusive,
                lock,
                reclaim,
                ..
            } => {
                let stat = self
                    .nlm_lock(req, &cookie, &lock, exclusive, block, reclaim)
                    .await?;
                NlmReply::Res { cookie, stat }
            }
            NlmArgs::Cancel {
                cookie,
                exclusive,
                lock,
                ..
            } => {
                let stat = self.nlm_cancel(req, &lock, exclusive)?;
                NlmReply::Res { cookie, stat }
            }
            NlmArgs::Unlock { cookie, lock } => {
                let stat = self.nlm_unlock(req, &lock)?;
                NlmReply::Res { cookie, stat }
            }
            NlmArgs::Res { .. } => NlmReply::Void,
            NlmArgs::FreeAll { name, .. } => {
                let grants = self
                    .nlm
                    .forget_client(&String::from_utf8_lossy(&name), None);
                self.send_grants(grants);
                NlmReply::Void
            }
        };
        // The _MSG forms answer with a separate _RES call to the client's lockd.
        if let Some(res_proc) = msg_result_proc(proc_) {
            self.send_msg_result(req.peer.ip(), res_proc, reply);
            return Ok(NlmReply::Void);
        }
        Ok(reply)
    }

    /// Resolves the lock's file handle; NLM reports handle problems as STALE_FH.
    fn nlm_file(
        &self,
        req: &Request,
        l: &Nlm4Lock,
    ) -> Result<Result<(FileId, bool), Nlm4Stat>, AuthStat> {
        match self.resolve(&NfsFh3(l.fh.clone()), req) {
            Ok(r) => Ok(Ok((r.id, r.rule().read_only))),
            Err(Failure::Auth(a)) => Err(a),
            Err(Failure::Status(_)) => Ok(Err(Nlm4Stat::StaleFh)),
        }
    }

    fn nlm_test(
        &self,
        req: &Request,
        l: &Nlm4Lock,
        exclusive: bool,
    ) -> Result<(Nlm4Stat, Option<Nlm4Holder>), AuthStat> {
        let file = match self.nlm_file(req, l)? {
            Ok((f, _)) => f,
            Err(s) => return Ok((s, None)),
        };
        if self.nlm.in_grace() {
            return Ok((Nlm4Stat::DeniedGracePeriod, None));
        }
        let locks = self.nlm.locks.lock().expect("lock table poisoned");
        Ok(match locks.test(file, &lock_of(l, exclusive)) {
            None => (Nlm4Stat::Granted, None),
            Some(h) => (Nlm4Stat::Denied, Some(holder(&h))),
        })
    }

    async fn nlm_lock(
        &self,
        req: &Request,
        cookie: &Bytes,
        l: &Nlm4Lock,
        exclusive: bool,
        block: bool,
        reclaim: bool,
    ) -> Result<Nlm4Stat, AuthStat> {
        let (file, read_only) = match self.nlm_file(req, l)? {
            Ok(x) => x,
            Err(s) => return Ok(s),
        };
        if exclusive && read_only {
            return Ok(Nlm4Stat::Rofs);
        }
        // During grace only reclaims; after it, a reclaim is too late (knfsd does the same).
        if self.nlm.in_grace() != reclaim {
            return Ok(Nlm4Stat::DeniedGracePeriod);
        }
        let caller = String::from_utf8_lossy(&l.caller_name).into_owned();
        self.nlm.monitor(&caller, req.peer.ip(), req.local.ip());
        let lock = lock_of(l, exclusive);
        let (outcome, woken) = {
            let mut table = self.nlm.locks.lock().expect("lock table poisoned");
            let outcome = table.lock(file, lock.clone(), block);
            // A downgrade (write to read) can let queued readers in.
            let woken = match outcome {
                LockOutcome::Granted => table.grant_waiters(file),
                _ => Vec::new(),
            };
            (outcome, woken)
        };
        self.send_grants(woken);
        Ok(match outcome {
            LockOutcome::Granted => Nlm4Stat::Granted,
            LockOutcome::Denied { .. } => Nlm4Stat::Denied,
            LockOutcome::Deadlock => Nlm4Stat::Deadlock,
            LockOutcome::Blocked => {
                let key = (file, lock.owner, lock.range.start, lock.range.end);
                self.nlm
                    .waiters
                    .lock()
                    .expect("waiters lock poisoned")
                    .insert(
                        key,
                        Waiter {
                            peer: req.peer.ip(),
                            cookie: cookie.clone(),
                            lock: l.clone(),
                            exclusive,
                        },
                    );
                Nlm4Stat::Blocked
            }
        })
    }

    fn nlm_cancel(
        &self,
        req: &Request,
        l: &Nlm4Lock,
        exclusive: bool,
    ) -> Result<Nlm4Stat, AuthStat> {
        let file = match self.nlm_file(req, l)? {
            Ok((f, _)) => f,
            Err(s) => return Ok(s),
        };
        let lock = lock_of(l, exclusive);
        let removed = self
            .nlm
            .locks
            .lock()
            .expect("lock table poisoned")
            .cancel(file, &lock);
        let key = (file, lock.owner, lock.range.start, lock.range.end);
        self.nlm
            .waiters
            .lock()
            .expect("waiters lock poisoned")
            .remove(&key);
        Ok(if removed {
            Nlm4Stat::Granted
        } else {
            Nlm4Stat::Denied
        })
    }

    fn nlm_unlock(&self, req: &Request, l: &Nlm4Lock) -> Result<Nlm4Stat, AuthStat> {
        let file = match self.nlm_file(req, l)? {
            Ok((f, _)) => f,
            Err(s) => return Ok(s),
        };
        let range = LockRange::from_offset_len(l.offset, l.len);
        let grants =
            self.nlm
                .locks
                .lock()
                .expect("lock table poisoned")
                .unlock(file, &owner_of(l), range);
        self.send_grants(grants);
        Ok(Nlm4Stat::Granted)
    }

    /// Tells each newly granted waiter's lockd, in the background.
    fn send_grants(&self, grants: Vec<Grant>) {
        for g in grants {
            let key = (
                g.file,
                g.lock.owner.clone(),
                g.lock.range.start,
                g.lock.range.end,
            );
            let Some(w) = self
                .nlm
                .waiters
                .lock()
                .expect("waiters lock poisoned")
                .remove(&key)
            else {
                continue;
            };
            tokio::spawn(async move {
                let mut args = Writer::new();
                NlmArgs::Test {
                    cookie: w.cookie.clone(),
                    exclusive: w.exclusive,
                    lock: w.lock.clone(),
                }
                .encode(&mut args);
                let args = args.into_bytes();
                match granted_callback(w.peer, &args).await {
                    Ok(()) => tracing::debug!(client = %w.peer, "GRANTED callback delivered"),
                    // The client retransmits its blocked LOCK and finds the lock its own.
                    Err(e) => tracing::info!(client = %w.peer, "GRANTED callback failed: {e}"),
                }
            });
        }
    }

    fn send_msg_result(&self, peer: IpAddr, res_proc: u32, reply: NlmReply) {
        tokio::spawn(async move {
            let mut w = Writer::new();
            reply.encode(&mut w);
            let args = w.into_bytes();
            let r = async {
                let port =
                    rpc_client::getport(peer, nlm::NLM_PROGRAM, nlm::NLM_VERSION, pm::IPPROTO_UDP)
                        .await?;
                rpc_client::call_udp(
                    SocketAddr::new(peer, port),
                    nlm::NLM_PROGRAM,
                    nlm::NLM_VERSION,
                    res_proc,
                    &args,
                )
                .await
            };
            if let Err(e) = r.await {
                tracing::info!(client = %peer, "NLM result callback failed: {e}");
            }
        });
    }

    /// Runs one NSM call: we are the status monitor that clients notify when they reboot.
    pub fn nsm(&self, req: &Request, args: NsmArgs) -> Writer {
        let mut w = Writer::new();
        match args {
            NsmArgs::Null => {}
            NsmArgs::Stat { .. } | NsmArgs::Mon => {
                // STAT_SUCC for STAT; SM_MON is only for a local lockd, which we do not serve.
                w.u32(if matches!(args, NsmArgs::Stat { .. }) {
                    0
                } else {
                    1
                });
                w.u32(self.nlm.state);
            }
            NsmArgs::Local => w.u32(self.nlm.state),
            NsmArgs::Notify { mon_name, state } => {
                let name = String::from_utf8_lossy(&mon_name).into_owned();
                tracing::info!(client = %name, state, from = %req.peer.ip(), "client rebooted: releasing its locks");
                let grants = self.nlm.forget_client(&name, Some(req.peer.ip()));
                self.send_grants(grants);
            }
        }
        w
    }

    /// After a restart: SM_NOTIFY every client that held locks, so its lockd reclaims them.
    /// All at once (a dead client must not delay the others past the grace period), each tried
    /// up to [`NOTIFY_ATTEMPTS`] times. A client that cannot be reached is dropped from the list:
    /// if it is down, it lost its locks anyway and its own statd notifies us when it boots.
    pub async fn notify_clients(&self) {
        let clients = self
            .nlm
            .pending
            .lock()
            .expect("pending lock poisoned")
            .clone();
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|c| {
                let state = self.nlm.state;
                tokio::spawn(async move {
                    let ok = notify_one(&c, state).await;
                    (c, ok)
                })
            })
            .collect();
        for t in tasks {
            let Ok((c, ok)) = t.await else { continue };
            if ok {
                tracing::info!(client = %c.name, addr = %c.addr, "SM_NOTIFY sent");
            } else {
                tracing::warn!(
                    client = %c.name, addr = %c.addr,
                    "SM_NOTIFY failed {NOTIFY_ATTEMPTS} times: dropping the client from the \
                     monitor list (it cannot reclaim; if it rebooted it holds nothing)"
                );
            }
            self.nlm
                .pending
                .lock()
                .expect("pending lock poisoned")
                .retain(|p| p.name != c.name);
        }
        let m = self.nlm.monitored.lock().expect("monitor lock poisoned");
        self.nlm.persist(&m);
    }
}

/// How often a lost SM_NOTIFY is retried, two seconds apart.
pub const NOTIFY_ATTEMPTS: u32 = 3;

async fn notify_one(c: &Monitored, state: u32) -> bool {
    let mut w = Writer::new();
    nlm::encode_notify(&mut w, c.server_addr.to_string().as_bytes(), state);
    let args = w.into_bytes();
    for attempt in 1..=NOTIFY_ATTEMPTS {
        let r = async {
            let port =
                rpc_client::getport(c.addr, nlm::NSM_PROGRAM, nlm::NSM_VERSION, pm::IPPROTO_UDP)
                    .await?;
            let to = SocketAddr::new(c.addr, port);
            rpc_client::call_udp(
                to,
                nlm::NSM_PROGRAM,
                nlm::NSM_VERSION,
                nlm::smproc::NOTIFY,
                &args,
            )
            .await
        };
        match r.await {
            Ok(_) => return true,
            Err(e) => tracing::debug!(client = %c.name, attempt, "SM_NOTIFY attempt failed: {e}"),
        }
        if attempt < NOTIFY_ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    false
}

async fn granted_callback(peer: IpAddr, args: &[u8]) -> std::io::Result<()> {
    let port =
        rpc_client::getport(peer, nlm::NLM_PROGRAM, nlm::NLM_VERSION, pm::IPPROTO_TCP).await?;
    let mut r = rpc_client::call_tcp(
        SocketAddr::new(peer, port),
        nlm::NLM_PROGRAM,
        nlm::NLM_VERSION,
        nlmproc::GRANTED,
        args,
    )
    .await?;
    match nlm::decode_res(&mut r) {
        Ok((_, Nlm4Stat::Granted)) => Ok(()),
        Ok((_, s)) => Err(std::io::Error::other(format!("client answered {s:?}"))),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// The _RES procedure that carries the result of a _MSG procedure.
fn msg_result_proc(proc_: u32) -> Option<u32> {
    use nlmproc::*;
    match proc_ {
        TEST_MSG => Some(TEST_RES),
        LOCK_MSG => Some(LOCK_RES),
        CANCEL_MSG => Some(CANCEL_RES),
        UNLOCK_MSG => Some(UNLOCK_RES),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsm_record_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileNsmStore::new(dir.path());
        assert_eq!(s.load().unwrap(), NsmRecord::default());
        let r = NsmRecord {
            state: 5,
            clients: vec![Monitored {
                name: "gpu01".into(),
                addr: "10.0.0.5".parse().unwrap(),
                server_addr: "10.0.0.1".parse().unwrap(),
            }],
        };
        s.save(&r).unwrap();
        assert_eq!(s.load().unwrap(), r);
    }

    #[test]
    fn restart_advances_the_state_number_and_keeps_it_odd() {
        let store = MemNsmStore::default();
        store
            .save(&NsmRecord {
                state: 4,
                clients: Vec::new(),
            })
            .unwrap();
        let nlm = Nlm::open(Box::new(store), Duration::from_secs(30)).unwrap();
        assert_eq!(nlm.state, 7);
        assert!(!nlm.in_grace(), "nobody to reclaim: no grace period");
    }

    #[test]
    fn grace_period_starts_when_clients_held_locks() {
        let store = MemNsmStore::default();
        store
            .save(&NsmRecord {
                state: 1,
                clients: vec![Monitored {
                    name: "c".into(),
                    addr: "10.0.0.5".parse().unwrap(),
                    server_addr: "10.0.0.1".parse().unwrap(),
                }],
            })
            .unwrap();
        let nlm = Nlm::open(Box::new(store), Duration::from_secs(30)).unwrap();
        assert!(nlm.in_grace());
    }
}
