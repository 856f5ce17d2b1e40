//! The grace period after a restart (RFC 8881 §8.4.2; NLM's grace period): one for the whole
//! server, obeyed by NFSv4.1 and NLM alike. While it runs, locks and opens are only reclaimed,
//! never newly granted, so no client can take a range that another client, of either protocol,
//! held before the restart and has not reclaimed yet.
//!
//! It is the union of two windows that start together:
//! * the NLM window, `nlm.grace_seconds` long when the NSM monitor list named clients. NLM
//!   clients cannot say that they are done, so it runs to its end;
//! * the NFSv4.1 window, one lease long when client records of the previous run exist. It
//!   closes early when every such client sent RECLAIM_COMPLETE, and each reclaim stretches it to
//!   at least half a lease ahead, never past twice the lease from the start (knfsd does the
//!   same; §8.4.2.1 allows it), so clients with much to reclaim are not cut off halfway.
//!
//! A floating mount target that moves to this node opens windows of its own
//! ([`Grace::takeover`], [`Grace::takeover_v4`]): its clients reclaim their locks (NLM) and
//! opens and locks (NFSv4.1) here, and meanwhile no lock is newly granted on this node, but
//! opens and I/O go on, so the node's other targets keep working (`ha/PROTOCOL.md` §7).
//!
//! Plain data: every call takes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nfs_proto::v4::Clientid4;

#[derive(Debug, Default)]
pub struct Grace {
    nlm_until: Option<Instant>,
    /// Owners of the NFSv4.1 clients the previous run knew, with their old clientids, until
    /// they send RECLAIM_COMPLETE or the v4 window ends.
    v4_reclaimable: HashMap<Bytes, Clientid4>,
    v4_until: Option<Instant>,
    v4_limit: Option<Instant>,
    /// The lock window of floating targets that moved here ([`Grace::takeover`]).
    locks_until: Option<Instant>,
    /// The NFSv4.1 reclaim window of floating targets that moved here
    /// ([`Grace::takeover_v4`]): like the v4 window of a restart, but it holds locks only.
    v4_takeover_until: Option<Instant>,
    v4_takeover_limit: Option<Instant>,
    /// The clients of those targets (owner, clientid on the earlier owner), until they send
    /// RECLAIM_COMPLETE or the window ends.
    v4_takeover: HashMap<Bytes, Clientid4>,
    lease: Duration,
    reclaims: u64,
}

impl Grace {
    /// The grace period of a server starting at `now`: an NLM window if `nlm_clients` held
    /// locks, a v4 window if `v4_clients` (owner, old clientid) were known. None if neither.
    pub fn start(
        now: Instant,
        nlm_period: Duration,
        nlm_clients: usize,
        lease: Duration,
        v4_clients: impl IntoIterator<Item = (Bytes, Clientid4)>,
    ) -> Grace {
        let v4_reclaimable: HashMap<Bytes, Clientid4> = v4_clients.into_iter().collect();
        let nlm_until = (nlm_clients > 0 && !nlm_period.is_zero()).then(|| now + nlm_period);
        let v4_until = (!v4_reclaimable.is_empty()).then(|| now + lease);
        let g = Grace {
            nlm_until,
            v4_until,
            v4_limit: v4_until.map(|_| now + 2 * lease),
            v4_reclaimable,
            locks_until: None,
            v4_takeover_until: None,
            v4_takeover_limit: None,
            v4_takeover: HashMap::new(),
            lease,
            reclaims: 0,
        };
        // The e2e scripts and operators look for these lines: one per protocol whose clients
        // may reclaim, though both open the same grace period.
        if nlm_until.is_some() {
            tracing::info!(
                clients = nlm_clients,
                seconds = nlm_period.as_secs(),
                "NLM grace period: only lock reclaims are accepted (NFSv4.1 obeys it too)"
            );
        }
        if v4_until.is_some() {
            tracing::info!(
                clients = g.v4_reclaimable.len(),
                seconds = lease.as_secs(),
                "NFSv4 grace period: clients of the previous run may reclaim their opens and \
                 locks (NLM obeys it too)"
            );
        }
        g
    }

    /// Whether the grace period runs: only reclaims are accepted, by NLM and NFSv4.1 alike.
    pub fn in_grace(&self, now: Instant) -> bool {
        self.nlm_open(now) || self.v4_open(now)
    }

    /// A floating target moved here, and NLM clients held locks through it on its earlier
    /// owner: until `now + period` they may reclaim them here, and no lock is newly granted
    /// (NLM's or NFSv4.1's), so no other client takes a range they held meanwhile. Unlike the
    /// grace period of a restart, opens and I/O go on: the files were never unreachable.
    pub fn takeover(&mut self, now: Instant, period: Duration) {
        let until = now + period;
        self.locks_until = Some(self.locks_until.map_or(until, |u| u.max(until)));
        tracing::info!(
            seconds = period.as_secs(),
            "lock grace after a floating target's takeover: only lock reclaims are accepted \
             (opens and I/O go on)"
        );
    }

    /// A floating target moved here, and `clients` (owner, clientid on the earlier owner)
    /// came through it there: they may reclaim their opens and locks here for one lease,
    /// stretched by reclaims up to two, or until each has sent RECLAIM_COMPLETE; meanwhile
    /// no lock is newly granted on this node (as in [`Grace::takeover`]). Opens and I/O go on.
    pub fn takeover_v4(
        &mut self,
        now: Instant,
        clients: impl IntoIterator<Item = (Bytes, Clientid4)>,
    ) {
        let before = self.v4_takeover.len();
        let mut incoming = 0;
        for c in clients {
            incoming += 1;
            self.v4_takeover.insert(c.0, c.1);
        }
        if incoming == 0 {
            return;
        }
        let added = self.v4_takeover.len() - before;
        let until = now + self.lease;
        let limit = now + 2 * self.lease;
        self.v4_takeover_until = Some(self.v4_takeover_until.map_or(until, |u| u.max(until)));
        self.v4_takeover_limit = Some(self.v4_takeover_limit.map_or(limit, |u| u.max(limit)));
        tracing::info!(
            clients = added,
            seconds = self.lease.as_secs(),
            "NFSv4 clients of a floating target that moved here may reclaim their opens and \
             locks (new locks wait; opens and I/O go on)"
        );
    }

    /// The previous run's NFSv4.1 clients `owners` reclaim elsewhere (they came through a
    /// floating target): they no longer hold the v4 window open.
    pub fn set_aside_v4(&mut self, owners: &[Bytes]) {
        for o in owners {
            self.v4_reclaimable.remove(o);
        }
    }

    /// Whether locks are only reclaimed now: the grace period, or a takeover's window.
    pub fn locks_in_grace(&self, now: Instant) -> bool {
        self.in_grace(now)
            || self.locks_until.is_some_and(|t| now < t)
            || self.v4_takeover_open(now)
    }

    fn v4_takeover_open(&self, now: Instant) -> bool {
        self.v4_takeover_until.is_some_and(|t| now < t) && !self.v4_takeover.is_empty()
    }

    fn nlm_open(&self, now: Instant) -> bool {
        self.nlm_until.is_some_and(|t| now < t)
    }

    fn v4_open(&self, now: Instant) -> bool {
        self.v4_until.is_some_and(|t| now < t) && !self.v4_reclaimable.is_empty()
    }

    /// NFSv4.1 clients of the previous run, or of targets that moved here, that have not
    /// finished reclaiming.
    pub fn clients_to_reclaim(&self) -> usize {
        self.v4_reclaimable.len() + self.v4_takeover.len()
    }

    /// Whether the NFSv4.1 client `owner` may reclaim now: the grace period runs and the
    /// previous run knew it. Stretches the v4 window (see the module docs).
    pub fn may_reclaim_v4(&mut self, owner: &Bytes, now: Instant) -> bool {
        self.reclaim_v4(owner, now, true)
    }

    /// Whether `owner`, a client that already finished reclaiming on this node, may reclaim
    /// what it held through a floating target that moved here (its takeover window runs).
    pub fn may_reclaim_takeover_v4(&mut self, owner: &Bytes, now: Instant) -> bool {
        self.reclaim_v4(owner, now, false)
    }

    /// A reclaim by `owner` in the takeover window, or also in the restart's when `restart`:
    /// whether it is taken; if so it stretches the window it is taken in.
    fn reclaim_v4(&mut self, owner: &Bytes, now: Instant, restart: bool) -> bool {
        let restart = restart && self.in_grace(now) && self.v4_reclaimable.contains_key(owner);
        let takeover = self.v4_takeover_open(now) && self.v4_takeover.contains_key(owner);
        if !restart && !takeover {
            return false;
        }
        self.reclaims += 1;
        let half = now + self.lease / 2;
        if let (true, Some(until), Some(limit)) = (restart, self.v4_until, self.v4_limit) {
            self.v4_until = Some(until.max(half.min(limit)));
        }
        if let (true, Some(until), Some(limit)) =
            (takeover, self.v4_takeover_until, self.v4_takeover_limit)
        {
            self.v4_takeover_until = Some(until.max(half.min(limit)));
        }
        true
    }

    /// Whether a RECLAIM_COMPLETE from `owner`, which sent one before, ends its reclaim of a
    /// target that moved here (rather than being one too many).
    pub fn takes_reclaim_complete_v4(&self, owner: &Bytes) -> bool {
        self.v4_takeover.contains_key(owner)
    }

    /// A floating target left this node: its clients `owners` no longer reclaim here, and
    /// their takeover window (if it still runs) stops holding this node's locks.
    pub fn leave_v4(&mut self, owners: &[Bytes]) {
        for o in owners {
            self.v4_takeover.remove(o);
        }
    }

    /// Whether an NLM reclaim is accepted now.
    pub fn may_reclaim_nlm(&mut self, now: Instant) -> bool {
        let ok = self.locks_in_grace(now);
        if ok {
            self.reclaims += 1;
        }
        ok
    }

    /// RECLAIM_COMPLETE from `owner`: it is done. Returns its clientids of the previous run
    /// and of the target's earlier owner, whose records may now go.
    pub fn reclaim_complete_v4(&mut self, owner: &Bytes) -> Vec<Clientid4> {
        [
            self.v4_reclaimable.remove(owner),
            self.v4_takeover.remove(owner),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Ends the v4 window if it is over. Returns the clientids of the previous run whose
    /// clients never finished reclaiming: their records go.
    pub fn tick(&mut self, now: Instant) -> Vec<Clientid4> {
        let mut gone = Vec::new();
        if self.v4_takeover_until.is_some() && !self.v4_takeover_open(now) {
            self.v4_takeover_until = None;
            self.v4_takeover_limit = None;
            gone.extend(std::mem::take(&mut self.v4_takeover).into_values());
        }
        if self.v4_until.is_none() || self.v4_open(now) {
            return gone;
        }
        self.v4_until = None;
        gone.extend(std::mem::take(&mut self.v4_reclaimable).into_values());
        tracing::info!(
            reclaimed = self.reclaims,
            clients_gone = gone.len(),
            nlm_window_open = self.nlm_open(now),
            "NFSv4 grace period over"
        );
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(now: Instant, s: u64) -> Instant {
        now + Duration::from_secs(s)
    }

    #[test]
    fn no_clients_of_the_previous_run_means_no_grace_period() {
        let now = Instant::now();
        let g = Grace::start(now, Duration::from_secs(45), 0, Duration::from_secs(90), []);
        assert!(!g.in_grace(now));
    }

    #[test]
    fn nlm_clients_alone_keep_the_whole_server_in_grace_for_the_nlm_period() {
        let now = Instant::now();
        let mut g = Grace::start(now, Duration::from_secs(45), 2, Duration::from_secs(90), []);
        assert!(g.in_grace(secs(now, 44)));
        assert!(g.may_reclaim_nlm(secs(now, 10)));
        assert!(!g.may_reclaim_v4(&Bytes::from_static(b"stranger"), secs(now, 10)));
        assert!(!g.in_grace(secs(now, 45)));
        assert!(!g.may_reclaim_nlm(secs(now, 46)), "too late to reclaim");
    }

    #[test]
    fn a_takeover_holds_new_locks_but_not_opens_for_its_period_and_takes_nlm_reclaims() {
        let now = Instant::now();
        let mut g = Grace::start(now, Duration::from_secs(45), 0, Duration::from_secs(90), []);
        assert!(!g.locks_in_grace(now));
        assert!(!g.may_reclaim_nlm(now), "no reclaim outside any grace");
        g.takeover(secs(now, 10), Duration::from_secs(45));
        assert!(!g.in_grace(secs(now, 11)), "opens are not held");
        assert!(g.locks_in_grace(secs(now, 54)));
        assert!(g.may_reclaim_nlm(secs(now, 20)));
        // A second takeover within the first's window extends it; an earlier end never shortens.
        g.takeover(secs(now, 30), Duration::from_secs(45));
        g.takeover(secs(now, 31), Duration::from_secs(1));
        assert!(g.locks_in_grace(secs(now, 74)));
        assert!(!g.locks_in_grace(secs(now, 75)));
    }

    #[test]
    fn the_v4_window_closes_early_but_the_nlm_window_still_holds_the_grace_period() {
        let now = Instant::now();
        let c1 = Bytes::from_static(b"c1");
        let mut g = Grace::start(
            now,
            Duration::from_secs(45),
            1,
            Duration::from_secs(90),
            [(c1.clone(), 42)],
        );
        assert!(g.may_reclaim_v4(&c1, secs(now, 1)));
        assert_eq!(g.reclaim_complete_v4(&c1), vec![42]);
        assert!(
            g.in_grace(secs(now, 2)),
            "NLM clients have not reclaimed yet"
        );
        assert!(!g.in_grace(secs(now, 45)));
    }

    #[test]
    fn a_v4_takeover_lets_its_clients_reclaim_and_holds_locks_but_not_opens_until_they_are_done() {
        let now = Instant::now();
        let mut g = Grace::start(now, Duration::from_secs(45), 0, Duration::from_secs(90), []);
        let (c1, c2) = (Bytes::from_static(b"c1"), Bytes::from_static(b"c2"));
        g.takeover_v4(secs(now, 10), [(c1.clone(), 7), (c2.clone(), 8)]);
        assert!(!g.in_grace(secs(now, 11)), "opens are not held");
        assert!(g.locks_in_grace(secs(now, 11)));
        assert!(g.may_reclaim_v4(&c1, secs(now, 11)));
        assert!(!g.may_reclaim_v4(&Bytes::from_static(b"stranger"), secs(now, 11)));
        assert_eq!(g.reclaim_complete_v4(&c1), vec![7]);
        assert!(g.locks_in_grace(secs(now, 12)), "c2 has not reclaimed yet");
        assert!(g.tick(secs(now, 12)).is_empty());
        assert_eq!(g.reclaim_complete_v4(&c2), vec![8]);
        assert!(
            !g.locks_in_grace(secs(now, 13)),
            "closed as soon as all are done"
        );
        assert!(!g.may_reclaim_v4(&c1, secs(now, 13)));
    }

    #[test]
    fn a_v4_takeover_window_ends_after_a_lease_and_forgets_who_never_came() {
        let now = Instant::now();
        let mut g = Grace::start(now, Duration::from_secs(45), 0, Duration::from_secs(90), []);
        g.takeover_v4(now, [(Bytes::from_static(b"gone"), 9)]);
        assert!(g.locks_in_grace(secs(now, 89)));
        assert!(g.tick(secs(now, 89)).is_empty());
        assert!(!g.locks_in_grace(secs(now, 90)));
        assert_eq!(g.tick(secs(now, 90)), vec![9]);
        assert_eq!(g.clients_to_reclaim(), 0);
    }

    #[test]
    fn a_takeover_s_reclaims_do_not_stretch_a_restart_s_grace_nor_the_reverse() {
        let now = Instant::now();
        let (old, moved) = (Bytes::from_static(b"old"), Bytes::from_static(b"moved"));
        let lease = Duration::from_secs(90);
        let mut g = Grace::start(now, Duration::ZERO, 0, lease, [(old.clone(), 1)]);
        g.takeover_v4(secs(now, 10), [(moved.clone(), 2)]);
        assert!(g.may_reclaim_v4(&moved, secs(now, 80)));
        assert!(
            !g.in_grace(secs(now, 90)),
            "the restart's window ends on time"
        );
        assert!(
            g.locks_in_grace(secs(now, 120)),
            "the takeover's was stretched"
        );
        assert!(
            !g.may_reclaim_v4(&old, secs(now, 91)),
            "too late for the restart's client"
        );
    }

    #[test]
    fn a_takeover_window_that_ran_out_unnoticed_opens_again_for_the_same_clients() {
        let now = Instant::now();
        let c = Bytes::from_static(b"c");
        let mut g = Grace::start(now, Duration::ZERO, 0, Duration::from_secs(90), []);
        g.takeover_v4(now, [(c.clone(), 1)]);
        // No tick ran meanwhile; the target comes back 100 s later.
        g.takeover_v4(secs(now, 100), [(c.clone(), 1)]);
        assert!(g.locks_in_grace(secs(now, 101)));
        assert!(g.may_reclaim_v4(&c, secs(now, 101)));
    }

    #[test]
    fn a_target_that_leaves_again_stops_holding_the_node_s_locks() {
        let now = Instant::now();
        let c = Bytes::from_static(b"c");
        let mut g = Grace::start(now, Duration::ZERO, 0, Duration::from_secs(90), []);
        g.takeover_v4(now, [(c.clone(), 1)]);
        assert!(g.locks_in_grace(secs(now, 1)));
        g.leave_v4(std::slice::from_ref(&c));
        assert!(!g.locks_in_grace(secs(now, 2)));
        assert!(!g.may_reclaim_v4(&c, secs(now, 2)));
    }

    #[test]
    fn v4_reclaims_stretch_the_window_up_to_twice_the_lease() {
        let now = Instant::now();
        let c1 = Bytes::from_static(b"c1");
        let mut g = Grace::start(
            now,
            Duration::from_secs(45),
            0,
            Duration::from_secs(90),
            [(c1.clone(), 42), (Bytes::from_static(b"slow"), 43)],
        );
        assert!(g.may_reclaim_v4(&c1, secs(now, 80)));
        assert!(g.in_grace(secs(now, 120)), "stretched past one lease");
        assert!(!g.in_grace(secs(now, 126)), "by half a lease only");
        assert!(g.may_reclaim_v4(&c1, secs(now, 124)));
        assert!(g.may_reclaim_v4(&c1, secs(now, 168)));
        assert!(g.in_grace(secs(now, 179)));
        assert!(!g.in_grace(secs(now, 180)));
        let mut gone = g.tick(secs(now, 181));
        gone.sort();
        assert_eq!(gone, vec![42, 43]);
    }
}
