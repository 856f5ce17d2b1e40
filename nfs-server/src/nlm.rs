//! NFSv3 locking: NLM v4 procedures on top of the shared [`LockManager`], and the server's own
//! NSM (status monitor), so a Linux client mounts without `nolock`.
//!
//! * Locks belong to `(caller_name, svid, oh)`, never to a connection: with `nconnect`, a dropped
//!   connection releases nothing. A client's locks go when it says it rebooted (SM_NOTIFY, or
//!   NLM FREE_ALL).
//! * Blocking LOCKs that must wait answer BLOCKED. When the holder unlocks, the waiter is granted
//!   in the lock table and told with a GRANTED callback to its lockd. If that callback is lost,
//!   the client's periodic retransmission of the LOCK finds the lock already its own.
//! * Every client that takes a lock is recorded in a monitor list, durable before its first
//!   lock is granted ([`crate::state::nlm`]). After a restart the server's NSM state number
//!   advances, each recorded client gets SM_NOTIFY, and the server's one grace period
//!   ([`crate::state::Grace`], which NFSv4.1 obeys too) admits only reclaims so that no lock
//!   is stolen before its holder reclaims it. With nobody to reclaim, there is no grace period.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use backend::{FileId, Store};
use bytes::Bytes;
use nfs_proto::nlm::{self, nlmproc, Nlm4Holder, Nlm4Lock, Nlm4Stat, NlmArgs, NlmReply, NsmArgs};
use nfs_proto::portmap as pm;
use nfs_proto::rpc::AuthStat;
use nfs_proto::v3::NfsFh3;
use nfs_proto::xdr::{Encode, Writer};

use crate::locks::{Grant, Lock, LockKind, LockOutcome, LockOwner, LockRange};
use crate::rpc_client;
use crate::server::{Request, Server};
use crate::state::nlm::{Monitored, NsmRecord, Waiter};
use crate::state::store::StateKey;
use crate::v3::Failure;

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
                    .state
                    .nlm
                    .forget_client(&String::from_utf8_lossy(&name), None);
                self.send_grants(grants);
                let _ = self.save_forgotten().await;
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
        if self.state.locks_in_grace(req.now) {
            return Ok((Nlm4Stat::DeniedGracePeriod, None));
        }
        let locks = self.state.nlm.locks.lock().expect("lock table poisoned");
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
        // During grace only reclaims, NLM's and NFSv4.1's alike; after it, a reclaim is too
        // late (knfsd does the same).
        let admitted = if reclaim {
            self.state.grace().may_reclaim_nlm(req.now)
        } else {
            !self.state.locks_in_grace(req.now)
        };
        if !admitted {
            return Ok(Nlm4Stat::DeniedGracePeriod);
        }
        let caller = String::from_utf8_lossy(&l.caller_name).into_owned();
        self.state
            .nlm
            .monitor(&caller, req.peer.ip(), req.local.ip());
        // The client is in the durable monitor list before it holds anything: otherwise a
        // restart would neither notify it nor let it reclaim.
        if let Err(e) = self.state.save_nsm().await {
            tracing::error!(client = %caller, "cannot save the NSM monitor list: {e}");
            return Ok(crate::error::state_save_failed_nlm(&e));
        }
        let lock = lock_of(l, exclusive);
        let (outcome, woken) = {
            let mut table = self.state.nlm.locks.lock().expect("lock table poisoned");
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
                self.state
                    .nlm
                    .waiters
                    .lock()
                    .expect("waiters lock poisoned")
                    .insert(
                        key,
                        Waiter {
                            peer: req.peer.ip(),
                            local: req.local.ip(),
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
            .state
            .nlm
            .locks
            .lock()
            .expect("lock table poisoned")
            .cancel(file, &lock);
        let key = (file, lock.owner, lock.range.start, lock.range.end);
        self.state
            .nlm
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
        let grants = self
            .state
            .nlm
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
                .state
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
                match granted_callback(w.peer, w.local, &args).await {
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
    pub async fn nsm(&self, req: &Request, args: NsmArgs) -> Writer {
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
                w.u32(self.state.nlm.state);
            }
            NsmArgs::Local => w.u32(self.state.nlm.state),
            NsmArgs::Notify { mon_name, state } => {
                let name = String::from_utf8_lossy(&mon_name).into_owned();
                tracing::info!(client = %name, state, from = %req.peer.ip(), "client rebooted: releasing its locks");
                let grants = self.state.nlm.forget_client(&name, Some(req.peer.ip()));
                self.send_grants(grants);
                let _ = self.save_forgotten().await;
            }
        }
        w
    }

    /// After a restart: SM_NOTIFY every client that held locks, so its lockd reclaims them.
    /// All at once (a dead client must not delay the others past the grace period), each tried
    /// up to [`NOTIFY_ATTEMPTS`] times. A client that cannot be reached is dropped from the list:
    /// if it is down, it lost its locks anyway and its own statd notifies us when it boots.
    ///
    /// Clients that locked through a floating target's address are left to whichever node
    /// serves the target next (this one included): it notifies them from the address, when
    /// it is up, with its lock window open (`Server::adopt_target`).
    pub async fn notify_clients(&self) {
        let floating = self.floating_addrs();
        let clients = self
            .state
            .nlm
            .pending()
            .into_iter()
            .filter(|c| !floating.contains(&c.server_addr))
            .collect();
        self.notify(clients).await;
    }

    /// The addresses of floating targets (whichever node serves them now).
    fn floating_addrs(&self) -> Vec<IpAddr> {
        self.targets
            .get()
            .map(|t| {
                t.list()
                    .iter()
                    .filter(|t| t.floating)
                    .flat_map(|t| t.listen.iter().map(|a| a.ip()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// At start: NFSv4.1 clients of the previous run that came through a floating target's
    /// address do not hold this node's grace period open (they reclaim on whichever node
    /// takes the target, this one included: [`Server::adopt_target`]), so the node's other
    /// targets leave grace as soon as their own clients are done.
    pub fn set_aside_floating_v4(&self) {
        let floating = self.floating_addrs();
        if floating.is_empty() {
            return;
        }
        let owners = self
            .state
            .nfs4
            .lock()
            .set_aside(&floating, std::time::Instant::now());
        if !owners.is_empty() {
            self.state.grace().set_aside_v4(&owners);
            tracing::info!(
                clients = owners.len(),
                "NFSv4 clients of floating targets are left to the targets' next owner"
            );
        }
    }

    /// A floating target at `addrs` came to this node, from node `previous` if another node
    /// served it last: the NLM clients that held locks through those addresses there
    /// (`previous`'s monitor list in the metadata log) and here before (this node's clients
    /// still to notify) join this node's list, to be told with [`Server::notify`] once the
    /// addresses are up here, and new locks wait for `nlm.grace_seconds` so that they can
    /// reclaim theirs first. Returns them.
    pub async fn adopt_target(&self, previous: Option<u64>, addrs: &[IpAddr]) -> Vec<Monitored> {
        self.adopt_target_v4(previous, addrs).await;
        let mut theirs: Vec<Monitored> = self
            .state
            .nlm
            .pending()
            .into_iter()
            .filter(|c| addrs.contains(&c.server_addr))
            .collect();
        if let Some(previous) = previous {
            let key = crate::state::store::node_doc_key(previous, StateKey::Nsm);
            let record = match self.store.doc(&key).await {
                Ok(Some((_, doc))) => NsmRecord::from_doc(&doc).map_err(|e| e.to_string()),
                Ok(None) => Ok(NsmRecord::default()),
                Err(e) => Err(e.to_string()),
            };
            match record {
                Ok(r) => theirs.extend(
                    r.clients
                        .into_iter()
                        .filter(|c| addrs.contains(&c.server_addr)),
                ),
                Err(e) => tracing::error!(
                    previous,
                    "cannot read the earlier owner's NSM monitor list: its lock clients of \
                     the target are not told to reclaim: {e}"
                ),
            }
        }
        let adopted = self.state.nlm.adopt(&theirs);
        if adopted.is_empty() {
            return adopted;
        }
        if let Err(e) = self.state.save_nsm().await {
            // They are told all the same; only a crash of this node before it told them
            // would leave them untold.
            tracing::error!("cannot save the NSM monitor list after a takeover: {e}");
        }
        if !self.state.config.nlm_grace.is_zero() {
            self.state
                .grace()
                .takeover(std::time::Instant::now(), self.state.config.nlm_grace);
        }
        tracing::info!(
            previous,
            clients = adopted.len(),
            "lock clients of a floating target that moved here: they will reclaim their locks"
        );
        adopted
    }

    /// The NFSv4.1 half of [`Server::adopt_target`] (`ha/PROTOCOL.md` §7.4): the clients
    /// whose EXCHANGE_ID came to `addrs` on node `previous` (its client records in the
    /// metadata log), and on this node before the target left it, may reclaim their opens
    /// and locks here, in a window scoped to them ([`crate::state::Grace::takeover_v4`]).
    /// Their records are saved here first, so that a crash of this node leaves them to the
    /// next owner.
    async fn adopt_target_v4(&self, previous: Option<u64>, addrs: &[IpAddr]) {
        let mut theirs = Vec::new();
        let mut read_failed = false;
        if let Some(previous) = previous {
            let key = crate::state::store::node_doc_key(previous, StateKey::Nfs4Clients);
            match self.store.doc(&key).await {
                Ok(Some((_, doc))) => theirs = crate::state::nfs4::parse_records(&doc),
                Ok(None) => {}
                Err(e) => {
                    read_failed = true;
                    tracing::error!(
                        previous,
                        "cannot read the earlier owner's NFSv4 client records: its clients of \
                     the target cannot reclaim their opens and locks here (new locks \
                     wait a lease): {e}"
                    )
                }
            }
        }
        let adopted = self.state.nfs4.lock().adopt_target(theirs, addrs);
        if adopted.is_empty() {
            if read_failed {
                // Whoever they are, they may hold locks: none is newly granted for a lease.
                self.state
                    .grace()
                    .takeover(std::time::Instant::now(), self.state.config.lease);
            }
            return;
        }
        if let Err(e) = self.state.save_nfs4().await {
            // They may reclaim all the same; only a crash of this node before they did would
            // leave the next owner without their records.
            tracing::error!("cannot save the NFSv4 client records after a takeover: {e}");
        }
        let n = adopted.len();
        {
            let now = std::time::Instant::now();
            let mut st = self.state.nfs4.lock();
            let mut grace = self.state.grace();
            // An earlier window that ran out unnoticed (no v4 traffic since) ends first, so
            // its clients are not taken for this one's.
            st.grace_tick(&mut grace, now);
            grace.takeover_v4(now, adopted);
        }
        tracing::info!(
            previous,
            clients = n,
            "NFSv4 clients of a floating target adopted"
        );
    }

    /// This node stopped serving a floating target at `addrs`: the locks taken through it
    /// go (their clients reclaim them from the next owner), and waiters they blocked are
    /// granted. Its NFSv4.1 clients lose their sessions and state here, and keep their
    /// records for the next owner to read.
    pub async fn release_target(&self, addrs: &[IpAddr]) {
        let purged = {
            let now = std::time::Instant::now();
            let mut st = self.state.nfs4.lock();
            let (n, owners) = st.release_target(addrs, now);
            if n > 0 {
                tracing::info!(clients = n, "NFSv4 clients of a floating target that left");
            }
            let mut grace = self.state.grace();
            grace.leave_v4(&owners);
            st.grace_tick(&mut grace, now);
            st.take_purged()
        };
        crate::v4::ops::lock::release_clients(self, &purged);
        let grants = self.state.nlm.release_target(addrs);
        self.send_grants(grants);
        self.save_forgotten().await;
    }

    /// SM_NOTIFY to `clients`, so that their lockd reclaims its locks (after a restart, or
    /// after a floating target moved here).
    pub async fn notify(&self, clients: Vec<Monitored>) {
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|c| {
                let state = self.state.nlm.state;
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
            self.state.nlm.notified(&c.name);
        }
        if self.save_forgotten().await {
            tracing::info!("NSM monitor list saved after the notifications");
        }
    }

    /// Saves the monitor list after clients left it. A failure leaves them in the saved list,
    /// so a later restart notifies them once more, which is harmless (a client that rebooted
    /// ignores a notification about locks it no longer has): it is logged, and the next save
    /// retries.
    async fn save_forgotten(&self) -> bool {
        match self.state.save_nsm().await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot save the NSM monitor list: {e}");
                false
            }
        }
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

/// GRANTED to `peer`'s lockd, from `local`, the address its LOCK came to: Linux lockd takes
/// a GRANTED only from the server address it holds the blocked lock with (a floating target's
/// address, not the node's own).
async fn granted_callback(peer: IpAddr, local: IpAddr, args: &[u8]) -> std::io::Result<()> {
    let port =
        rpc_client::getport(peer, nlm::NLM_PROGRAM, nlm::NLM_VERSION, pm::IPPROTO_TCP).await?;
    // A loopback or unspecified local address (tests, a wildcard listener's odd case) is left
    // to the routing table.
    let from = Some(local).filter(|a| !a.is_loopback() && !a.is_unspecified());
    let mut r = rpc_client::call_tcp_from(
        SocketAddr::new(peer, port),
        from,
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
