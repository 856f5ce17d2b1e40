//! NFSv4.1 protocol state (RFC 8881 §2.4, §2.10, §8, §9): clients, sessions with their slot
//! tables, leases, and open and lock stateids. Plain data: no clock is read here, every call
//! that needs the time takes `now`, and nothing awaits. Confirmed client records are kept as a
//! document that `ProtocolState::save_nfs4` makes durable through the `StateStore` (and,
//! later, replicates) before the change is acknowledged.
//!
//! Identifiers carry the epoch of this run ([`super::Identity`]) and the node's id, so that
//! they never repeat across restarts nor across the nodes a floating mount target moves
//! between (every node starts at epoch 1): a clientid is `epoch << 32 | node << 20 | n`
//! (`node` the low 12 bits of the node id, `n` never one in use), a sessionid starts with the
//! clientid, a stateid's `other` is `epoch || node (16 bits) || n (48 bits)`. One from an
//! earlier instance of the server, or from another node, is recognized as stale
//! (NFS4ERR_STALE_CLIENTID, NFS4ERR_STALE_STATEID), as after a restart.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use backend::FileId;
use bytes::Bytes;
use nfs_proto::v4::{Clientid4, Nfsstat4, SessionId4, Stateid4, Verifier4};

/// A client record as it is persisted: enough to recognize the client after a restart, or
/// on the node that takes over the mount target it came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    pub clientid: Clientid4,
    pub owner: Bytes,
    pub verifier: Verifier4,
    /// The server address its EXCHANGE_ID came to: the mount target it uses, which may move
    /// to another node (`ha/PROTOCOL.md` §7.4). None in records of earlier versions.
    pub server: Option<IpAddr>,
}

impl ClientRecord {
    /// Whether the client came through one of `addrs` (a floating target's).
    pub fn came_through(&self, addrs: &[IpAddr]) -> bool {
        self.server.is_some_and(|a| addrs.contains(&a))
    }
}

/// The stored form of the client records: one line per client, clientid, verifier and owner
/// in hex, then the server address if known (earlier versions' `<data_dir>/nfs4-clients`
/// had the first three fields only, and still parse).
pub fn records_doc<'a>(records: impl IntoIterator<Item = &'a ClientRecord>) -> Vec<u8> {
    let mut text = String::new();
    for r in records {
        text.push_str(&format!(
            "{:016x} {} {}",
            r.clientid,
            hex(&r.verifier),
            hex(&r.owner)
        ));
        if let Some(a) = r.server {
            text.push_str(&format!(" {a}"));
        }
        text.push('\n');
    }
    text.into_bytes()
}

/// The records in a stored document; lines that do not parse are skipped (their clients
/// cannot reclaim, which is what a client unknown to the server gets anyway).
pub fn parse_records(doc: &[u8]) -> Vec<ClientRecord> {
    String::from_utf8_lossy(doc)
        .lines()
        .filter_map(parse_record)
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn parse_record(line: &str) -> Option<ClientRecord> {
    let mut it = line.split_whitespace();
    let clientid = u64::from_str_radix(it.next()?, 16).ok()?;
    let verifier: Verifier4 = unhex(it.next()?)?.try_into().ok()?;
    let owner = Bytes::from(unhex(it.next()?)?);
    let server = match it.next() {
        Some(a) => Some(a.parse().ok()?),
        None => None,
    };
    Some(ClientRecord {
        clientid,
        owner,
        verifier,
        server,
    })
}

/// One client (RFC 8881 §2.4): created unconfirmed by EXCHANGE_ID, confirmed by its first
/// CREATE_SESSION.
#[derive(Debug)]
pub struct Client {
    pub rec: ClientRecord,
    /// Who created the record (for AUTH_SYS, "sys:<uid>"): RFC 8881 §18.35.4 compares it.
    pub principal: String,
    pub confirmed: bool,
    /// The csa_sequence the next CREATE_SESSION must carry (§18.36.4).
    pub next_cs_seq: u32,
    /// The reply to the last CREATE_SESSION, for its retransmission.
    pub cs_reply: Option<(u32, Result<nfs_proto::v4::CreateSession4ResOk, Nfsstat4>)>,
    pub renewed: Instant,
    pub sessions: HashSet<[u8; 16]>,
    pub reclaim_complete: bool,
}

/// One slot of a session's fore channel (§2.10.6.1).
#[derive(Debug, Default)]
pub struct Slot {
    pub seqid: u32,
    pub in_progress: bool,
    /// The whole COMPOUND4res of the last request, if the client asked to cache it.
    pub reply: Option<Bytes>,
}

#[derive(Debug)]
pub struct Session {
    pub id: SessionId4,
    pub clientid: Clientid4,
    pub fore: nfs_proto::v4::ChannelAttrs4,
    pub slots: Vec<Slot>,
    /// Connections associated with the session (§2.10.3.1), newest last, at most
    /// [`BOUND_CONNS_MAX`]: the one CREATE_SESSION came on, those named by
    /// BIND_CONN_TO_SESSION, and (SP4_NONE) every one a SEQUENCE came on.
    pub conns: std::collections::VecDeque<ConnId>,
}

/// A connection, by its two ends (unique while it is open, over TCP and RDMA alike).
pub type ConnId = (std::net::SocketAddr, std::net::SocketAddr);
/// Connections remembered per session; the oldest is forgotten first (closed connections are
/// not reported to the state, so the list must not grow without bound).
pub const BOUND_CONNS_MAX: usize = 64;

impl Session {
    /// Associates `conn` with the session.
    pub fn bind(&mut self, conn: ConnId) {
        if let Some(i) = self.conns.iter().position(|c| *c == conn) {
            self.conns.remove(i);
        } else if self.conns.len() == BOUND_CONNS_MAX {
            self.conns.pop_front();
        }
        self.conns.push_back(conn);
    }
}

/// What SEQUENCE decided about a request.
#[derive(Debug)]
pub enum SeqOutcome {
    /// A new request: run it; the slot is now in progress.
    New { clientid: Clientid4, slots: u32 },
    /// A retransmission whose reply was cached: send it again.
    Replay(Bytes),
}

/// Open or lock state behind a stateid.
#[derive(Clone, Debug)]
pub enum StateKind {
    Open {
        owner: Bytes,
        access: u32,
        deny: u32,
    },
    Lock {
        owner: Bytes,
        /// The open stateid's `other` this lock state hangs off.
        open: [u8; 12],
    },
}

#[derive(Clone, Debug)]
pub struct StateEntry {
    pub clientid: Clientid4,
    pub file: FileId,
    pub seqid: u32,
    pub kind: StateKind,
}

/// Every NFSv4.1 client, session and stateid of this server.
pub struct StateTable {
    epoch: u32,
    /// The low 16 bits of the node id (12 of them in clientids).
    node: u16,
    lease: Duration,
    next_client: u32,
    next_session: u32,
    next_state: u64,
    clients: HashMap<Clientid4, Client>,
    sessions: HashMap<[u8; 16], Session>,
    states: HashMap<[u8; 12], StateEntry>,
    /// Open stateids per file, for share reservations.
    opens_by_file: HashMap<FileId, HashSet<[u8; 12]>>,
    /// Clients dropped since the last [`StateTable::take_purged`]: their byte-range locks,
    /// which live in the shared lock manager, must be released by the caller.
    purged: Vec<Clientid4>,
    /// Confirmed clients as they must be known after a restart (this run's, and the previous
    /// run's until they reclaim or the grace period ends), with the number of changes made to
    /// them and how many of those are known durable.
    records: std::collections::BTreeMap<Clientid4, ClientRecord>,
    record_changes: u64,
    records_durable: u64,
    /// Records of clients whose mount target left this node ([`StateTable::release_target`]),
    /// kept for its next owner to read, with when they go.
    released: Vec<(Instant, Clientid4)>,
}

impl StateTable {
    /// A table for node `node`'s run with epoch `epoch`, knowing the client `records` the
    /// previous run saved (they may reclaim while the grace period runs, see
    /// [`super::Grace`]).
    pub fn new(epoch: u32, node: u64, lease: Duration, records: Vec<ClientRecord>) -> StateTable {
        StateTable {
            epoch,
            node: node as u16,
            lease,
            next_client: 1,
            next_session: 1,
            next_state: 1,
            clients: HashMap::new(),
            sessions: HashMap::new(),
            states: HashMap::new(),
            opens_by_file: HashMap::new(),
            purged: Vec::new(),
            records: records.into_iter().map(|r| (r.clientid, r)).collect(),
            record_changes: 0,
            records_durable: 0,
            released: Vec::new(),
        }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    fn save_record(&mut self, rec: ClientRecord) {
        self.records.insert(rec.clientid, rec);
        self.record_changes += 1;
    }

    fn forget_record(&mut self, id: Clientid4) {
        if self.records.remove(&id).is_some() {
            self.record_changes += 1;
        }
    }

    /// The client records to save, if they changed since the last durable save: the change
    /// count and the document.
    pub fn unsaved_records(&self) -> Option<(u64, Vec<u8>)> {
        (self.record_changes > self.records_durable)
            .then(|| (self.record_changes, records_doc(self.records.values())))
    }

    /// The document of change `changes` is durable.
    pub fn records_saved(&mut self, changes: u64) {
        self.records_durable = self.records_durable.max(changes);
    }

    /// Client records as they would be loaded after a restart now (tests, admin).
    pub fn records(&self) -> Vec<ClientRecord> {
        self.records.values().cloned().collect()
    }

    /// Ends the reclaim window of `grace` if it is over, dropping the records of the previous
    /// run's clients that never came back.
    pub fn grace_tick(&mut self, grace: &mut super::Grace, now: Instant) {
        for old in grace.tick(now) {
            self.forget_record(old);
        }
    }

    /// Whether `id` may reclaim state now (§8.4.2.1): the grace period runs, the previous run
    /// knew the client, and it has not sent RECLAIM_COMPLETE. Otherwise NFS4ERR_NO_GRACE.
    pub fn may_reclaim(
        &mut self,
        grace: &mut super::Grace,
        id: Clientid4,
        now: Instant,
    ) -> Result<(), Nfsstat4> {
        let c = self.clients.get(&id).ok_or(Nfsstat4::StaleClientid)?;
        // A client that finished reclaiming here may still reclaim what it held through a
        // floating target that moved here since (its record here came through another).
        let ok = if c.reclaim_complete {
            grace.may_reclaim_takeover_v4(&c.rec.owner, now)
        } else {
            grace.may_reclaim_v4(&c.rec.owner, now)
        };
        if ok {
            Ok(())
        } else {
            Err(Nfsstat4::NoGrace)
        }
    }

    /// RECLAIM_COMPLETE (§18.51): the client has reclaimed what it will.
    pub fn reclaim_complete(
        &mut self,
        grace: &mut super::Grace,
        id: Clientid4,
        now: Instant,
    ) -> Result<(), Nfsstat4> {
        let c = self.clients.get_mut(&id).ok_or(Nfsstat4::StaleClientid)?;
        let owner = c.rec.owner.clone();
        if c.reclaim_complete && !grace.takes_reclaim_complete_v4(&owner) {
            return Err(Nfsstat4::CompleteAlready);
        }
        c.reclaim_complete = true;
        for old in grace.reclaim_complete_v4(&owner) {
            if old != id {
                self.forget_record(old);
            }
        }
        self.grace_tick(grace, now);
        Ok(())
    }

    pub fn client(&self, id: Clientid4) -> Option<&Client> {
        self.clients.get(&id)
    }

    pub fn client_mut(&mut self, id: Clientid4) -> Option<&mut Client> {
        self.clients.get_mut(&id)
    }

    pub fn session(&self, id: &SessionId4) -> Option<&Session> {
        self.sessions.get(&id.0)
    }

    /// RFC 8881 §18.35.4, the cases a client without SP4_MACH_CRED or SP4_SSV can reach.
    /// Returns (clientid, sequenceid, confirmed).
    pub fn exchange_id(
        &mut self,
        owner: &Bytes,
        verifier: Verifier4,
        principal: &str,
        update: bool,
        server: Option<IpAddr>,
        now: Instant,
    ) -> Result<(Clientid4, u32, bool), Nfsstat4> {
        self.expire(now);
        let confirmed = self
            .clients
            .values()
            .find(|c| c.confirmed && c.rec.owner == *owner)
            .map(|c| {
                (
                    c.rec.clientid,
                    c.rec.verifier,
                    c.next_cs_seq,
                    c.principal.clone(),
                )
            });
        let unconfirmed = self
            .clients
            .values()
            .find(|c| !c.confirmed && c.rec.owner == *owner)
            .map(|c| c.rec.clientid);
        if update {
            return match confirmed {
                // Case 9: another principal may not update the record.
                Some((_, _, _, p)) if p != principal => Err(Nfsstat4::Perm),
                Some((id, v, seq, _)) if v == verifier => {
                    self.renew(id, now);
                    Ok((id, seq, true))
                }
                Some(_) => Err(Nfsstat4::NotSame),
                None => Err(Nfsstat4::NoEnt),
            };
        }
        if let Some((id, v, seq, p)) = confirmed {
            if p != principal {
                // Case 3, client collision: another principal uses this owner. Its record
                // goes if it holds no state; otherwise the owner is in use.
                if self.has_state(id) {
                    return Err(Nfsstat4::ClidInUse);
                }
                self.purge_client(id);
            } else if v == verifier {
                // Case 2: the same incarnation asks again (e.g. over another connection).
                self.renew(id, now);
                return Ok((id, seq, true));
            }
        }
        // Cases 1, 4 and 5: a new client, a replaced unconfirmed record, or a client that
        // rebooted (its old confirmed record goes when the new one is confirmed).
        if let Some(id) = unconfirmed {
            self.purge_client(id);
        }
        let id = self.new_clientid()?;
        self.clients.insert(
            id,
            Client {
                rec: ClientRecord {
                    clientid: id,
                    // Copied: a slice would pin the whole received record (over RDMA, a
                    // registered buffer) for as long as the client lives.
                    owner: Bytes::copy_from_slice(owner),
                    verifier,
                    server,
                },
                principal: principal.to_string(),
                confirmed: false,
                next_cs_seq: 1,
                cs_reply: None,
                renewed: now,
                sessions: HashSet::new(),
                reclaim_complete: false,
            },
        );
        Ok((id, 1, false))
    }

    /// Whether the client holds opens or locks.
    pub fn has_state(&self, id: Clientid4) -> bool {
        self.states.values().any(|s| s.clientid == id)
    }

    /// Whether the client's lease ran out (it may still hold state: a courtesy client).
    pub fn expired(&self, id: Clientid4, now: Instant) -> bool {
        self.clients
            .get(&id)
            .is_some_and(|c| now.saturating_duration_since(c.renewed) > self.lease)
    }

    /// Drops a client whose lease ran out because another client's request conflicts with its
    /// state (RFC 8881 §8.3: a courteous server keeps expired clients' state until then).
    pub fn revoke_expired(&mut self, id: Clientid4, now: Instant) -> bool {
        if self.expired(id, now) {
            self.purge_client(id);
            return true;
        }
        false
    }

    /// Status of a clientid named by the client: STALE_CLIENTID if this server never issued it
    /// (or forgot it).
    pub fn check_client(&self, id: Clientid4) -> Result<&Client, Nfsstat4> {
        self.clients.get(&id).ok_or(Nfsstat4::StaleClientid)
    }

    /// Confirms `id` and drops any earlier confirmed incarnation of the same owner.
    pub fn confirm(&mut self, id: Clientid4) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.confirmed {
            return;
        }
        c.confirmed = true;
        let rec = c.rec.clone();
        let old: Vec<Clientid4> = self
            .clients
            .values()
            .filter(|o| o.confirmed && o.rec.owner == rec.owner && o.rec.clientid != id)
            .map(|o| o.rec.clientid)
            .collect();
        for o in old {
            self.purge_client(o);
        }
        self.save_record(rec);
    }

    /// Creates a session for a confirmed client with the negotiated fore channel.
    pub fn create_session(
        &mut self,
        clientid: Clientid4,
        fore: nfs_proto::v4::ChannelAttrs4,
        conn: ConnId,
    ) -> SessionId4 {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&clientid.to_be_bytes());
        id[8..12].copy_from_slice(&self.next_session.to_be_bytes());
        id[12..].copy_from_slice(&self.epoch.to_be_bytes());
        self.next_session = self.next_session.wrapping_add(1);
        let slots = (0..fore.ca_maxrequests).map(|_| Slot::default()).collect();
        self.sessions.insert(
            id,
            Session {
                id: SessionId4(id),
                clientid,
                fore,
                slots,
                conns: std::collections::VecDeque::from([conn]),
            },
        );
        if let Some(c) = self.clients.get_mut(&clientid) {
            c.sessions.insert(id);
        }
        SessionId4(id)
    }

    /// DESTROY_SESSION (§18.37.3): only over a connection associated with the session.
    pub fn destroy_session(&mut self, id: &SessionId4, conn: ConnId) -> Result<(), Nfsstat4> {
        let s = self.sessions.get(&id.0).ok_or(Nfsstat4::BadSession)?;
        if !s.conns.contains(&conn) {
            return Err(Nfsstat4::ConnNotBoundToSession);
        }
        let s = self.sessions.remove(&id.0).ok_or(Nfsstat4::BadSession)?;
        if let Some(c) = self.clients.get_mut(&s.clientid) {
            c.sessions.remove(&id.0);
        }
        Ok(())
    }

    /// DESTROY_CLIENTID (§18.50.3): refused while the client has sessions or state.
    pub fn destroy_client(&mut self, id: Clientid4) -> Result<(), Nfsstat4> {
        let c = self.clients.get(&id).ok_or(Nfsstat4::StaleClientid)?;
        if !c.sessions.is_empty() || self.states.values().any(|s| s.clientid == id) {
            return Err(Nfsstat4::ClientidBusy);
        }
        self.purge_client(id);
        Ok(())
    }

    /// Clients dropped (expired, replaced, destroyed) since the last call.
    pub fn take_purged(&mut self) -> Vec<Clientid4> {
        std::mem::take(&mut self.purged)
    }

    fn purge_client(&mut self, id: Clientid4) {
        self.drop_client(id, false);
    }

    /// Drops a client with its sessions and state; its record too unless `keep_record`.
    fn drop_client(&mut self, id: Clientid4, keep_record: bool) {
        self.purged.push(id);
        if let Some(c) = self.clients.remove(&id) {
            for s in c.sessions {
                self.sessions.remove(&s);
            }
            if c.confirmed && !keep_record {
                self.forget_record(id);
            }
        }
        let gone: Vec<[u8; 12]> = self
            .states
            .iter()
            .filter(|(_, s)| s.clientid == id)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.remove_state(&k);
        }
    }

    fn renew(&mut self, id: Clientid4, now: Instant) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.renewed = now;
        }
    }

    /// Forgets unconfirmed clients idle for a lease, and confirmed ones idle for two leases
    /// (a courtesy lease: their state stays until then). Returns the clientids dropped.
    pub fn expire(&mut self, now: Instant) -> Vec<Clientid4> {
        let lease = self.lease;
        let gone: Vec<Clientid4> = self
            .clients
            .values()
            .filter(|c| {
                let idle = now.saturating_duration_since(c.renewed);
                idle > if c.confirmed { lease * 2 } else { lease }
            })
            .map(|c| c.rec.clientid)
            .collect();
        for id in &gone {
            self.purge_client(*id);
        }
        let mut released = Vec::new();
        self.released.retain(|&(at, id)| {
            let keep = now.saturating_duration_since(at) <= lease * 2;
            if !keep {
                released.push(id);
            }
            keep
        });
        for id in released {
            self.forget_record(id);
        }
        gone
    }

    /// The floating mount target at `addrs` left this node (moved, lost, self-fenced): the
    /// clients that came through it lose their sessions and state here (their byte-range
    /// locks go through [`StateTable::take_purged`]), as they would in a restart, but their
    /// records stay for two leases, so that the target's next owner finds them in this
    /// node's saved records and lets them reclaim there. Returns how many clients went.
    pub fn release_target(&mut self, addrs: &[IpAddr], now: Instant) -> (usize, Vec<Bytes>) {
        let owners: Vec<Bytes> = self
            .records
            .values()
            .filter(|r| r.came_through(addrs))
            .map(|r| r.owner.clone())
            .collect();
        let gone: Vec<Clientid4> = self
            .clients
            .values()
            .filter(|c| c.rec.came_through(addrs))
            .map(|c| c.rec.clientid)
            .collect();
        for id in &gone {
            self.drop_client(*id, true);
            if self.records.contains_key(id) {
                self.released.push((now, *id));
            }
        }
        (gone.len(), owners)
    }

    /// At start: the records of the previous run's clients that came through `addrs` (floating
    /// targets, which may be served elsewhere now) go as [`StateTable::release_target`]'s do,
    /// after two leases unless this node takes the target and they reclaim here. Returns their
    /// owners.
    pub fn set_aside(&mut self, addrs: &[IpAddr], now: Instant) -> Vec<Bytes> {
        let mut owners = Vec::new();
        for r in self.records.values() {
            if r.came_through(addrs) && !self.clients.contains_key(&r.clientid) {
                owners.push(r.owner.clone());
                self.released.push((now, r.clientid));
            }
        }
        owners
    }

    /// A floating mount target at `addrs` came to this node. `theirs` are the client
    /// records its earlier owner saved; those of clients that came through `addrs`, and this
    /// node's own records of them (the target left and came back) whose client is not here
    /// now, may reclaim here: they join this node's records, keeping the clientid the other
    /// node issued (it has that node's id in it, so it is unlike any of this node's), and are
    /// returned as (owner, old clientid) for the grace period's reclaim window. A client
    /// that already holds a record here (it uses another target of this node: Linux sends
    /// one owner string to every server) keeps that record, and may reclaim all the same.
    pub fn adopt_target(
        &mut self,
        theirs: Vec<ClientRecord>,
        addrs: &[IpAddr],
    ) -> Vec<(Bytes, Clientid4)> {
        let mut out: Vec<(Bytes, Clientid4)> = Vec::new();
        let own: Vec<Clientid4> = self
            .records
            .values()
            .filter(|r| r.came_through(addrs) && !self.clients.contains_key(&r.clientid))
            .map(|r| r.clientid)
            .collect();
        for id in own {
            self.released.retain(|(_, r)| *r != id);
            out.push((self.records[&id].owner.clone(), id));
        }
        for r in theirs.into_iter().filter(|r| r.came_through(addrs)) {
            if out.iter().any(|(o, _)| *o == r.owner) {
                continue;
            }
            let known = self.records.values().any(|o| o.owner == r.owner)
                || self.clients.values().any(|c| c.rec.owner == r.owner);
            out.push((r.owner.clone(), r.clientid));
            // A clientid this node holds already would be another client's (node ids that
            // agree in the 12 bits a clientid keeps): that one is not overwritten.
            if !known && !self.records.contains_key(&r.clientid) {
                self.save_record(r);
            }
        }
        out
    }

    /// SEQUENCE (§18.46.3): checks the session, slot and seqid, and renews the lease.
    /// Associates `conn` with session `sid` (BIND_CONN_TO_SESSION).
    pub fn bind_conn(&mut self, sid: &SessionId4, conn: ConnId) -> Result<(), Nfsstat4> {
        self.sessions
            .get_mut(&sid.0)
            .ok_or(Nfsstat4::BadSession)?
            .bind(conn);
        Ok(())
    }

    /// SEQUENCE on `conn`, which it associates with the session (SP4_NONE, §2.10.3.1).
    pub fn sequence(
        &mut self,
        sid: &SessionId4,
        slotid: u32,
        seqid: u32,
        conn: ConnId,
        now: Instant,
    ) -> Result<SeqOutcome, Nfsstat4> {
        let s = self.sessions.get_mut(&sid.0).ok_or(Nfsstat4::BadSession)?;
        if s.conns.back() != Some(&conn) {
            s.bind(conn);
        }
        let nslots = s.slots.len() as u32;
        let clientid = s.clientid;
        let slot = s.slots.get_mut(slotid as usize).ok_or(Nfsstat4::BadSlot)?;
        let out = if seqid == slot.seqid {
            if slot.in_progress {
                return Err(Nfsstat4::Delay);
            }
            match &slot.reply {
                Some(r) => SeqOutcome::Replay(r.clone()),
                None => return Err(Nfsstat4::RetryUncachedRep),
            }
        } else if seqid == slot.seqid.wrapping_add(1) {
            slot.seqid = seqid;
            slot.in_progress = true;
            slot.reply = None;
            SeqOutcome::New {
                clientid,
                slots: nslots,
            }
        } else {
            return Err(Nfsstat4::SeqMisordered);
        };
        self.renew(clientid, now);
        Ok(out)
    }

    /// Ends the request running in a slot, keeping its reply if the client asked.
    pub fn finish_slot(&mut self, sid: &SessionId4, slotid: u32, reply: Option<Bytes>) {
        if let Some(slot) = self
            .sessions
            .get_mut(&sid.0)
            .and_then(|s| s.slots.get_mut(slotid as usize))
        {
            slot.in_progress = false;
            slot.reply = reply;
        }
    }

    /// A clientid of this node and run that no client or record holds; DELAY when all
    /// 2^20 - 1 are held (clients expire within two leases).
    fn new_clientid(&mut self) -> Result<Clientid4, Nfsstat4> {
        let base = (u64::from(self.epoch) << 32) | (u64::from(self.node & 0xfff) << 20);
        for _ in 0..0xf_ffff {
            let id = base | u64::from(self.next_client);
            self.next_client = (self.next_client + 1) & 0xf_ffff;
            self.next_client = self.next_client.max(1);
            if !self.clients.contains_key(&id) && !self.records.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(Nfsstat4::Delay)
    }

    fn new_other(&mut self) -> [u8; 12] {
        let mut o = [0u8; 12];
        o[..4].copy_from_slice(&self.epoch.to_be_bytes());
        o[4..6].copy_from_slice(&self.node.to_be_bytes());
        o[6..].copy_from_slice(&self.next_state.to_be_bytes()[2..]);
        self.next_state += 1;
        o
    }

    /// OPEN's state change (§18.16.3, §9.7): checks share reservations against other
    /// owners' opens of `file`, then creates the owner's open stateid or upgrades it.
    pub fn open(
        &mut self,
        clientid: Clientid4,
        owner: &Bytes,
        file: FileId,
        access: u32,
        deny: u32,
        now: Instant,
    ) -> Result<Stateid4, Nfsstat4> {
        // Conflicting opens of clients whose lease ran out are revoked first.
        let conflicting: Vec<Clientid4> = self
            .opens_by_file
            .get(&file)
            .into_iter()
            .flatten()
            .map(|o| &self.states[o])
            .filter(|e| e.clientid != clientid)
            .filter(|e| {
                matches!(&e.kind, StateKind::Open { access: ea, deny: ed, .. }
                if access & ed != 0 || deny & ea != 0)
            })
            .map(|e| e.clientid)
            .collect();
        for c in conflicting {
            self.revoke_expired(c, now);
        }
        let mut mine = None;
        for o in self.opens_by_file.get(&file).into_iter().flatten() {
            let e = &self.states[o];
            let StateKind::Open {
                owner: eo,
                access: ea,
                deny: ed,
            } = &e.kind
            else {
                continue;
            };
            if e.clientid == clientid && eo == owner {
                mine = Some(*o);
                continue;
            }
            if access & ed != 0 || deny & ea != 0 {
                return Err(Nfsstat4::ShareDenied);
            }
        }
        if let Some(o) = mine {
            let e = self.states.get_mut(&o).expect("indexed open exists");
            if let StateKind::Open {
                access: ea,
                deny: ed,
                ..
            } = &mut e.kind
            {
                *ea |= access;
                *ed |= deny;
            }
            e.seqid = e.seqid.wrapping_add(1).max(1);
            return Ok(Stateid4 {
                seqid: e.seqid,
                other: o,
            });
        }
        let other = self.new_other();
        self.states.insert(
            other,
            StateEntry {
                clientid,
                file,
                seqid: 1,
                kind: StateKind::Open {
                    owner: Bytes::copy_from_slice(owner),
                    access,
                    deny,
                },
            },
        );
        self.opens_by_file.entry(file).or_default().insert(other);
        Ok(Stateid4 { seqid: 1, other })
    }

    /// Finds the state a client names (§8.2.2, §8.2.4 for seqid 0), on `file`.
    pub fn check_stateid(
        &self,
        clientid: Clientid4,
        sid: &Stateid4,
        file: FileId,
    ) -> Result<&StateEntry, Nfsstat4> {
        let e = self.lookup_stateid(sid)?;
        if e.clientid != clientid || e.file != file {
            return Err(Nfsstat4::BadStateid);
        }
        Ok(e)
    }

    /// The state behind a stateid, checking the epoch and the seqid only.
    pub fn lookup_stateid(&self, sid: &Stateid4) -> Result<&StateEntry, Nfsstat4> {
        let Some(e) = self.states.get(&sid.other) else {
            let epoch = u32::from_be_bytes(sid.other[..4].try_into().expect("4 bytes"));
            let node = u16::from_be_bytes(sid.other[4..6].try_into().expect("2 bytes"));
            return Err(if epoch != self.epoch || node != self.node {
                Nfsstat4::StaleStateid
            } else {
                Nfsstat4::BadStateid
            });
        };
        if sid.seqid != 0 && sid.seqid != e.seqid {
            return Err(if sid.seqid > e.seqid {
                Nfsstat4::BadStateid
            } else {
                Nfsstat4::OldStateid
            });
        }
        Ok(e)
    }

    /// The share access an open or lock stateid grants.
    pub fn access_of(&self, e: &StateEntry) -> u32 {
        match &e.kind {
            StateKind::Open { access, .. } => *access,
            StateKind::Lock { open, .. } => match self.states.get(open).map(|o| &o.kind) {
                Some(StateKind::Open { access, .. }) => *access,
                _ => 0,
            },
        }
    }

    /// Whether another owner's open of `file` denies `access` (for I/O with a special stateid).
    pub fn denied(&self, file: FileId, access: u32) -> bool {
        self.opens_by_file.get(&file).into_iter().flatten().any(
            |o| matches!(&self.states[o].kind, StateKind::Open { deny, .. } if deny & access != 0),
        )
    }

    /// CLOSE (§18.2.4): forgets the open and the lock stateids under it, which it returns so
    /// the caller can release their locks.
    pub fn close(
        &mut self,
        clientid: Clientid4,
        sid: &Stateid4,
        file: FileId,
    ) -> Result<Vec<StateEntry>, Nfsstat4> {
        let e = self.check_stateid(clientid, sid, file)?;
        if !matches!(e.kind, StateKind::Open { .. }) {
            return Err(Nfsstat4::BadStateid);
        }
        let other = sid.other;
        let locks: Vec<[u8; 12]> = self
            .states
            .iter()
            .filter(|(_, s)| matches!(&s.kind, StateKind::Lock { open, .. } if *open == other))
            .map(|(k, _)| *k)
            .collect();
        let removed = locks.iter().filter_map(|l| self.states.remove(l)).collect();
        self.remove_state(&other);
        Ok(removed)
    }

    /// OPEN_DOWNGRADE (§18.18.3): the new modes must be a subset of the current ones.
    pub fn downgrade(
        &mut self,
        clientid: Clientid4,
        sid: &Stateid4,
        file: FileId,
        access: u32,
        deny: u32,
    ) -> Result<Stateid4, Nfsstat4> {
        self.check_stateid(clientid, sid, file)?;
        let e = self.states.get_mut(&sid.other).expect("checked above");
        let StateKind::Open {
            access: ea,
            deny: ed,
            ..
        } = &mut e.kind
        else {
            return Err(Nfsstat4::BadStateid);
        };
        if access & !*ea != 0 || deny & !*ed != 0 {
            return Err(Nfsstat4::Inval);
        }
        *ea = access;
        *ed = deny;
        e.seqid = e.seqid.wrapping_add(1).max(1);
        Ok(Stateid4 {
            seqid: e.seqid,
            other: sid.other,
        })
    }

    /// Creates (or finds) the lock stateid of `owner` under the open `open`.
    pub fn lock_state(
        &mut self,
        clientid: Clientid4,
        open: &[u8; 12],
        owner: &Bytes,
        file: FileId,
    ) -> [u8; 12] {
        if let Some((k, _)) = self.states.iter().find(|(_, s)| {
            s.clientid == clientid
                && matches!(&s.kind, StateKind::Lock { owner: o, open: op } if o == owner && op == open)
        }) {
            return *k;
        }
        let other = self.new_other();
        self.states.insert(
            other,
            StateEntry {
                clientid,
                file,
                seqid: 0,
                kind: StateKind::Lock {
                    owner: Bytes::copy_from_slice(owner),
                    open: *open,
                },
            },
        );
        other
    }

    /// Bumps a stateid's seqid after a change (LOCK, LOCKU) and returns the new stateid.
    pub fn bump(&mut self, other: &[u8; 12]) -> Option<Stateid4> {
        let e = self.states.get_mut(other)?;
        e.seqid = e.seqid.wrapping_add(1).max(1);
        Some(Stateid4 {
            seqid: e.seqid,
            other: *other,
        })
    }

    pub fn entry(&self, other: &[u8; 12]) -> Option<&StateEntry> {
        self.states.get(other)
    }

    /// FREE_STATEID (§18.38.3): a lock stateid may go; an open stateid must be closed.
    pub fn free_stateid(
        &mut self,
        clientid: Clientid4,
        sid: &Stateid4,
    ) -> Result<StateEntry, Nfsstat4> {
        let e = self.lookup_stateid(sid)?;
        if e.clientid != clientid {
            return Err(Nfsstat4::BadStateid);
        }
        if matches!(e.kind, StateKind::Open { .. }) {
            return Err(Nfsstat4::LocksHeld);
        }
        let e = e.clone();
        self.states.remove(&sid.other);
        Ok(e)
    }

    fn remove_state(&mut self, other: &[u8; 12]) {
        if let Some(e) = self.states.remove(other) {
            if let Some(set) = self.opens_by_file.get_mut(&e.file) {
                set.remove(other);
                if set.is_empty() {
                    self.opens_by_file.remove(&e.file);
                }
            }
        }
    }

    /// Number of stateids held (tests, metrics).
    /// Confirmed clients, sessions, and clients of the previous instance still to reclaim.
    /// Confirmed clients and sessions.
    pub fn summary(&self) -> (usize, usize) {
        let confirmed = self.clients.values().filter(|c| c.confirmed).count();
        (confirmed, self.sessions.len())
    }

    pub fn state_count(&self) -> usize {
        self.states.len()
    }
}
