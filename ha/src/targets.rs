//! Mount-target ownership (`ha/PROTOCOL.md` §6), sans-IO: which floating targets this node
//! serves, decided from what it last read of etcd and from when its ownership lease was last
//! renewed. The driver (`nfs-server/src/ops/failover.rs`) does the etcd calls, the addresses
//! and the listeners; this module only decides, with time passed in as `now`.
//!
//! * A target without an owner is claimed by the live node with the fewest targets (ties:
//!   the lowest node id), one claim at a time, with an etcd transaction that only one claimant
//!   wins. The claim's revision is the target's **epoch**.
//! * A node serves a target only while etcd names it the owner **under its current lease**
//!   (a node that restarted within its old lease's life does not serve under the old key).
//! * **Self-fencing**: a node that has gone half the lease's TTL without a successful
//!   keep-alive stops serving every target at once; etcd expires the lease no earlier than a
//!   whole TTL after the last keep-alive it granted, so the old owner has stopped before a new
//!   owner can exist. Renewals are timed from when the keep-alive was *sent*.
//! * **Preferred owner** (a planned move, `sluice target move`): a target may name the node
//!   that should own it. While that node is live and says it can serve the target, its owner
//!   elsewhere stops and releases it, and only the preferred node claims it; otherwise the
//!   preference is ignored (a dead or unable preferred node never leaves a target unowned).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Who owns a target, as etcd says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub node: u64,
    /// The etcd lease the owner key is attached to.
    pub lease: i64,
    /// The claim's revision: the ownership epoch.
    pub epoch: i64,
}

/// One read of etcd: the owners of targets, and the nodes that may own one (their targets'
/// lease is live).
#[derive(Clone, Debug, Default)]
pub struct View {
    pub owners: BTreeMap<String, Owner>,
    pub alive: BTreeSet<u64>,
    /// The floating targets each live node says it can serve (its settings name them).
    pub able: BTreeMap<u64, BTreeSet<String>>,
    /// The node each target should be owned by, where one was asked for.
    pub preferred: BTreeMap<String, u64>,
    /// Nodes drained for maintenance (`sluice node drain`, until they start again): they
    /// claim a target only when no other live node can.
    pub drained: BTreeSet<u64>,
}

impl View {
    /// The node that should own `target` now: its preferred node, if that one is live and
    /// can serve it.
    pub fn preferred_owner(&self, target: &str) -> Option<u64> {
        self.preferred.get(target).copied().filter(|n| {
            self.alive.contains(n) && self.able.get(n).is_some_and(|a| a.contains(target))
        })
    }
}

/// Where the targets of `node` should go to drain it (`sluice node drain`): each target it
/// owns or is preferred on moves to another live node that can serve it, the one with the
/// fewest targets (owned, or preferred there) first, ties by node id. Targets no other node can
/// serve are left out (named in the second list).
pub fn drain_plan(view: &View, node: u64) -> (Vec<(String, u64)>, Vec<String>) {
    let mut load: BTreeMap<u64, usize> = view
        .alive
        .iter()
        .filter(|&&n| n != node && !view.drained.contains(&n))
        .map(|&n| (n, 0))
        .collect();
    for (t, o) in &view.owners {
        let on = view.preferred_owner(t).unwrap_or(o.node);
        if let Some(n) = load.get_mut(&on) {
            *n += 1;
        }
    }
    let mut names: BTreeSet<&String> = view
        .owners
        .iter()
        .filter(|(_, o)| o.node == node)
        .map(|(t, _)| t)
        .collect();
    names.extend(
        view.preferred
            .iter()
            .filter(|(_, &n)| n == node)
            .map(|(t, _)| t),
    );
    let (mut moves, mut stuck) = (Vec::new(), Vec::new());
    for t in names {
        let pick = load
            .iter()
            .filter(|(n, _)| view.able.get(n).is_some_and(|a| a.contains(t)))
            .min_by_key(|(&n, &count)| (count, n))
            .map(|(&n, _)| n);
        match pick {
            Some(n) => {
                *load.get_mut(&n).expect("picked from the table") += 1;
                moves.push((t.clone(), n));
            }
            None => stuck.push(t.clone()),
        }
    }
    (moves, stuck)
}

/// Why a node stops serving a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopWhy {
    /// No successful keep-alive for half the lease's TTL (or the lease expired).
    SelfFenced,
    /// etcd names another owner, or another epoch, or none.
    Lost,
    /// The target is no longer floating here (removed from the settings).
    Gone,
    /// Another live node is its preferred owner: stop, then release the target to it.
    Moved,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Try to claim the target (an etcd transaction under this node's lease).
    Claim(String),
    /// Bring the target's addresses up and serve it.
    Serve { target: String, epoch: i64 },
    /// Stop serving it: listeners, connections and addresses go.
    Stop {
        target: String,
        epoch: i64,
        why: StopWhy,
    },
}

/// What a node knows of its own lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// When the last keep-alive that etcd granted was sent (or the grant asked for).
    pub renewed: Instant,
}

/// This node's ownership state: the targets it serves, and at which epoch.
#[derive(Debug)]
pub struct Ownership {
    me: u64,
    ttl: Duration,
    serving: BTreeMap<String, i64>,
}

impl Ownership {
    pub fn new(me: u64, ttl: Duration) -> Ownership {
        Ownership {
            me,
            ttl,
            serving: BTreeMap::new(),
        }
    }

    /// The targets served now, with their epochs.
    pub fn serving(&self) -> &BTreeMap<String, i64> {
        &self.serving
    }

    /// Forgets that `target` is served (its addresses or listeners could not be brought
    /// up): the next step with a view that still names this node serves it again.
    pub fn forget(&mut self, target: &str) {
        self.serving.remove(target);
    }

    /// How long a node may go without a renewal before it stops serving.
    pub fn fence_after(&self) -> Duration {
        self.ttl / 2
    }

    /// Whether this node may serve at `now`: its last renewal is younger than half the TTL.
    pub fn fresh(&self, now: Instant, lease: Option<Lease>) -> bool {
        lease.is_some_and(|l| now.saturating_duration_since(l.renewed) < self.fence_after())
    }

    /// Whether the kernel lifetime of the served addresses may be extended now: only while
    /// the last renewal is younger than a quarter of the TTL, so that addresses given a
    /// lifetime of half the TTL vanish by themselves before etcd can expire the lease, even
    /// if this process is stopped or killed.
    pub fn may_extend(&self, now: Instant, lease: Option<Lease>) -> bool {
        lease.is_some_and(|l| now.saturating_duration_since(l.renewed) < self.ttl / 4)
    }

    /// Decides what to do. `floating`: the floating targets this node knows of. `view`: a
    /// fresh read of etcd, or `None` (then only self-fencing is checked, as a watchdog does
    /// between reads).
    pub fn step(
        &mut self,
        now: Instant,
        lease: Option<Lease>,
        floating: &BTreeSet<String>,
        view: Option<&View>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let fresh = self.fresh(now, lease);
        let current = |v: &View, t: &str, epoch: i64| {
            v.owners.get(t).is_some_and(|o| {
                o.node == self.me && Some(o.lease) == lease.map(|l| l.id) && o.epoch == epoch
            })
        };
        let stops: Vec<(String, i64, StopWhy)> = self
            .serving
            .iter()
            .filter_map(|(t, &epoch)| {
                let why = if !fresh {
                    StopWhy::SelfFenced
                } else if !floating.contains(t) {
                    StopWhy::Gone
                } else if view.is_some_and(|v| !current(v, t, epoch)) {
                    StopWhy::Lost
                } else if view.is_some_and(|v| v.preferred_owner(t).is_some_and(|n| n != self.me)) {
                    StopWhy::Moved
                } else {
                    return None;
                };
                Some((t.clone(), epoch, why))
            })
            .collect();
        let stopped: BTreeSet<String> = stops.iter().map(|(t, _, _)| t.clone()).collect();
        for (target, epoch, why) in stops {
            self.serving.remove(&target);
            out.push(Action::Stop { target, epoch, why });
        }
        let (Some(view), Some(lease), true) = (view, lease, fresh) else {
            return out;
        };
        for t in floating {
            if let Some(o) = view.owners.get(t) {
                let mine = o.node == self.me && o.lease == lease.id;
                if mine && view.preferred_owner(t).is_some_and(|n| n != self.me) {
                    // Claimed just before the preference came: give it up unserved.
                    if !self.serving.contains_key(t) && !stopped.contains(t) {
                        out.push(Action::Stop {
                            target: t.clone(),
                            epoch: o.epoch,
                            why: StopWhy::Moved,
                        });
                    }
                } else if mine && !self.serving.contains_key(t) {
                    self.serving.insert(t.clone(), o.epoch);
                    out.push(Action::Serve {
                        target: t.clone(),
                        epoch: o.epoch,
                    });
                }
            }
        }
        // Unowned targets go to the live node with the fewest, one at a time in name order;
        // a node that is not the pick leaves the target to the node that is. Drained nodes
        // only when every live node is drained.
        let mut load: BTreeMap<u64, usize> = view.alive.iter().map(|&n| (n, 0)).collect();
        load.insert(self.me, 0);
        if load.keys().any(|n| !view.drained.contains(n)) {
            load.retain(|n, _| !view.drained.contains(n));
        }
        if !load.contains_key(&self.me) {
            return out;
        }
        for o in view.owners.values() {
            if let Some(n) = load.get_mut(&o.node) {
                *n += 1;
            }
        }
        for t in floating.iter().filter(|t| !view.owners.contains_key(*t)) {
            let least = || {
                load.iter()
                    .min_by_key(|(&node, &n)| (n, node))
                    .map(|(&node, _)| node)
                    .expect("this node is in the load table")
            };
            let pick = view.preferred_owner(t).unwrap_or_else(least);
            if pick == self.me {
                out.push(Action::Claim(t.clone()));
            }
            *load.entry(pick).or_insert(0) += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(4);

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// This node's lease (id 7), last renewed at `at`.
    fn lease_renewed(at: Instant) -> Option<Lease> {
        Some(Lease { id: 7, renewed: at })
    }

    fn view(owners: &[(&str, u64, i64, i64)], alive: &[u64]) -> View {
        View {
            owners: owners
                .iter()
                .map(|&(t, node, lease, epoch)| (t.to_string(), Owner { node, lease, epoch }))
                .collect(),
            alive: alive.iter().copied().collect(),
            ..View::default()
        }
    }

    #[test]
    fn an_unowned_target_is_claimed_by_the_least_loaded_live_node() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let floating = names(&["a", "b"]);
        // Node 2 owns "b"; nodes 1 and 3 own nothing: node 1 (the lower id) claims "a".
        let v = view(&[("b", 2, 70, 5)], &[1, 2, 3]);
        let mut one = Ownership::new(1, TTL);
        assert_eq!(
            one.step(now, lease, &floating, Some(&v)),
            vec![Action::Claim("a".into())]
        );
        let mut three = Ownership::new(3, TTL);
        assert!(three.step(now, lease, &floating, Some(&v)).is_empty());
    }

    #[test]
    fn a_node_serves_a_target_only_under_its_current_lease() {
        let now = Instant::now();
        let floating = names(&["a"]);
        let mut own = Ownership::new(1, TTL);
        // The key names node 1 under lease 6, from before a restart: not served.
        let old = view(&[("a", 1, 6, 10)], &[1]);
        let lease = lease_renewed(now);
        assert!(own.step(now, lease, &floating, Some(&old)).is_empty());
        let claimed = view(&[("a", 1, 7, 12)], &[1]);
        assert_eq!(
            own.step(now, lease, &floating, Some(&claimed)),
            vec![Action::Serve {
                target: "a".into(),
                epoch: 12
            }]
        );
        assert!(own.step(now, lease, &floating, Some(&claimed)).is_empty());
    }

    #[test]
    fn a_node_without_a_renewal_for_half_the_ttl_stops_serving_even_without_a_read() {
        let start = Instant::now();
        let floating = names(&["a"]);
        let lease = lease_renewed(start);
        let mut own = Ownership::new(1, TTL);
        let v = view(&[("a", 1, 7, 12)], &[1]);
        own.step(start, lease, &floating, Some(&v));
        assert!(own
            .step(
                start + TTL / 2 - Duration::from_millis(1),
                lease,
                &floating,
                None
            )
            .is_empty());
        assert!(own.may_extend(start + TTL / 4 - Duration::from_millis(1), lease));
        assert!(!own.may_extend(start + TTL / 4, lease));
        assert_eq!(
            own.step(start + TTL / 2, lease, &floating, None),
            vec![Action::Stop {
                target: "a".into(),
                epoch: 12,
                why: StopWhy::SelfFenced
            }]
        );
        // Stale, it claims nothing and serves nothing even when etcd still names it.
        assert!(own
            .step(start + TTL / 2, lease, &floating, Some(&v))
            .is_empty());
    }

    #[test]
    fn a_node_that_sees_another_owner_or_epoch_stops_at_once() {
        let now = Instant::now();
        let floating = names(&["a"]);
        let lease = lease_renewed(now);
        let mut own = Ownership::new(1, TTL);
        own.step(
            now,
            lease,
            &floating,
            Some(&view(&[("a", 1, 7, 12)], &[1, 2])),
        );
        assert_eq!(
            own.step(
                now,
                lease,
                &floating,
                Some(&view(&[("a", 2, 8, 15)], &[1, 2]))
            ),
            vec![Action::Stop {
                target: "a".into(),
                epoch: 12,
                why: StopWhy::Lost
            }]
        );
    }

    #[test]
    fn a_target_that_could_not_be_brought_up_is_served_again_at_the_next_read() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let floating = names(&["a"]);
        let v = view(&[("a", 1, 7, 12)], &[1]);
        let mut own = Ownership::new(1, TTL);
        assert_eq!(own.step(now, lease, &floating, Some(&v)).len(), 1);
        own.forget("a");
        assert_eq!(
            own.step(now, lease, &floating, Some(&v)),
            vec![Action::Serve {
                target: "a".into(),
                epoch: 12
            }]
        );
    }

    #[test]
    fn a_target_dropped_from_the_settings_stops_being_served() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let mut own = Ownership::new(1, TTL);
        let v = view(&[("a", 1, 7, 12)], &[1]);
        own.step(now, lease, &names(&["a"]), Some(&v));
        assert_eq!(
            own.step(now, lease, &names(&[]), Some(&v)),
            vec![Action::Stop {
                target: "a".into(),
                epoch: 12,
                why: StopWhy::Gone
            }]
        );
    }

    #[test]
    fn unowned_targets_spread_over_the_live_nodes() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let floating = names(&["a", "b", "c", "d"]);
        let v = view(&[], &[1, 2, 3]);
        let claims = |me| {
            Ownership::new(me, TTL)
                .step(now, lease, &floating, Some(&v))
                .len()
        };
        // Four targets over three nodes: node 1 claims two ("a" and "d"), the others one each.
        assert_eq!((claims(1), claims(2), claims(3)), (2, 1, 1));
    }

    /// `v` with `target` preferred on `node`, every live node able to serve `able`.
    fn preferring(mut v: View, target: &str, node: u64, able: &[&str]) -> View {
        v.preferred.insert(target.into(), node);
        for &n in &v.alive {
            v.able.insert(n, names(able));
        }
        v
    }

    #[test]
    fn a_moved_target_is_released_by_its_owner_and_claimed_only_by_the_preferred_node() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let floating = names(&["a"]);
        let mut one = Ownership::new(1, TTL);
        let owned = view(&[("a", 1, 7, 10)], &[1, 2, 3]);
        assert_eq!(one.step(now, lease, &floating, Some(&owned)).len(), 1);
        // "a" should be on node 3: node 1 stops and releases it.
        let moved = preferring(owned, "a", 3, &["a"]);
        assert_eq!(
            one.step(now, lease, &floating, Some(&moved)),
            vec![Action::Stop {
                target: "a".into(),
                epoch: 10,
                why: StopWhy::Moved
            }]
        );
        assert!(one.serving().is_empty());
        // Unowned now: node 2 (the least loaded, by id) leaves it to node 3.
        let free = preferring(view(&[], &[1, 2, 3]), "a", 3, &["a"]);
        assert!(Ownership::new(2, TTL)
            .step(now, lease, &floating, Some(&free))
            .is_empty());
        assert!(one.step(now, lease, &floating, Some(&free)).is_empty());
        assert_eq!(
            Ownership::new(3, TTL).step(now, lease, &floating, Some(&free)),
            vec![Action::Claim("a".into())]
        );
    }

    #[test]
    fn a_preferred_node_that_is_dead_or_cannot_serve_the_target_is_ignored() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let floating = names(&["a"]);
        // Node 4 is not live: node 1 keeps serving, and an unowned "a" goes to node 1.
        let mut one = Ownership::new(1, TTL);
        let owned = preferring(view(&[("a", 1, 7, 10)], &[1, 2]), "a", 4, &["a"]);
        assert_eq!(one.step(now, lease, &floating, Some(&owned)).len(), 1);
        assert!(one.step(now, lease, &floating, Some(&owned)).is_empty());
        let free = preferring(view(&[], &[1, 2]), "a", 4, &["a"]);
        assert_eq!(
            Ownership::new(1, TTL).step(now, lease, &floating, Some(&free)),
            vec![Action::Claim("a".into())]
        );
        // Node 2 is live but its settings do not name "a": the same.
        let unable = preferring(view(&[("a", 1, 7, 10)], &[1, 2]), "a", 2, &["b"]);
        assert!(one.step(now, lease, &floating, Some(&unable)).is_empty());
    }

    #[test]
    fn a_target_claimed_just_before_it_was_moved_is_given_up_unserved() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let floating = names(&["a"]);
        let mut one = Ownership::new(1, TTL);
        let v = preferring(view(&[("a", 1, 7, 10)], &[1, 2]), "a", 2, &["a"]);
        assert_eq!(
            one.step(now, lease, &floating, Some(&v)),
            vec![Action::Stop {
                target: "a".into(),
                epoch: 10,
                why: StopWhy::Moved
            }]
        );
        assert!(one.serving().is_empty());
    }

    #[test]
    fn draining_a_node_spreads_its_targets_over_the_others_that_can_serve_them() {
        // Node 1 owns a, b and c, and d is preferred on it; node 2 owns e. Node 3 cannot
        // serve c; nobody else can serve d... except node 2.
        let mut v = view(
            &[
                ("a", 1, 7, 1),
                ("b", 1, 7, 2),
                ("c", 1, 7, 3),
                ("e", 2, 8, 4),
            ],
            &[1, 2, 3],
        );
        v.preferred.insert("d".into(), 1);
        v.able.insert(1, names(&["a", "b", "c", "d", "e"]));
        v.able.insert(2, names(&["a", "b", "c", "d", "e"]));
        v.able.insert(3, names(&["a", "b", "e"]));
        let (moves, stuck) = drain_plan(&v, 1);
        // Loads before: node 2 has e, node 3 nothing. a -> 3, b -> 2 (tie 1:1, lower id),
        // c -> only 2 can, d -> only 2 can.
        assert_eq!(
            moves,
            vec![
                ("a".to_string(), 3),
                ("b".to_string(), 2),
                ("c".to_string(), 2),
                ("d".to_string(), 2)
            ]
        );
        assert!(stuck.is_empty());
        // With node 2 gone too, c and d have nowhere to go.
        v.alive.remove(&2);
        let (moves, stuck) = drain_plan(&v, 1);
        assert_eq!(moves, vec![("a".to_string(), 3), ("b".to_string(), 3)]);
        assert_eq!(stuck, vec!["c".to_string(), "d".to_string()]);
    }

    #[test]
    fn a_drained_node_claims_no_target_while_another_live_node_can() {
        let now = Instant::now();
        let lease = lease_renewed(now);
        let floating = names(&["a"]);
        // Node 1 is drained and owns nothing, node 2 owns two targets: node 2 claims "a".
        let mut v = view(&[("x", 2, 8, 1), ("y", 2, 8, 2)], &[1, 2]);
        v.drained.insert(1);
        assert!(Ownership::new(1, TTL)
            .step(now, lease, &floating, Some(&v))
            .is_empty());
        assert_eq!(
            Ownership::new(2, TTL).step(now, lease, &floating, Some(&v)),
            vec![Action::Claim("a".into())]
        );
        // Only drained nodes are live: one of them still claims it.
        v.drained.insert(2);
        assert_eq!(
            Ownership::new(1, TTL).step(now, lease, &floating, Some(&v)),
            vec![Action::Claim("a".into())]
        );
        // A drain never sends targets to another drained node.
        let mut d = view(&[("a", 1, 7, 1)], &[1, 2, 3]);
        for n in 1..=3 {
            d.able.insert(n, names(&["a"]));
        }
        d.drained.insert(2);
        assert_eq!(drain_plan(&d, 1).0, vec![("a".to_string(), 3)]);
    }
}
