//! Fencing of calls made on a floating target's behalf, at the writer (`ha/PROTOCOL.md` §6),
//! sans IO.
//!
//! The node that serves a floating mount target tags every call it makes for the target's
//! clients with the target and its ownership epoch (the revision of its etcd claim). Every
//! such call that changes anything runs on the metadata writer (the log's leader), which is
//! therefore the one receiver that must refuse a stale owner. A new owner, before it brings
//! the target's addresses up, *fences* the target at its epoch on the writer:
//!
//! 1. the writer raises the target's floor to the new epoch: from then on a call tagged with
//!    a lower epoch is refused (`Fenced`) before it runs;
//! 2. it waits until the calls tagged with a lower epoch that were already running have
//!    ended, so none of them lands after the new owner's first call;
//! 3. it commits the floor to the metadata log (a document whose version is the epoch), so
//!    the next writer, after a change of leader, refuses the same calls.
//!
//! So a paused old owner that wakes up and ships a WRITE it took before the takeover cannot
//! overwrite what the new owner's clients wrote since (invariant F1), even though it has not
//! yet noticed that it lost its lease.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::wire::TargetEpoch;

/// The metadata-log document that holds a target's floor: its version is the epoch.
pub fn floor_key(target: &str) -> Vec<u8> {
    format!("fence/target/{target}").into_bytes()
}

/// What the writer knows of each target's floor in one term, and the tagged calls running.
#[derive(Debug, Default)]
pub struct Fences {
    /// The term these floors were learnt in: a new term starts from the log again.
    term: u64,
    targets: HashMap<Arc<str>, Fence>,
}

#[derive(Debug, Default)]
struct Fence {
    /// The lowest epoch admitted.
    floor: u64,
    /// Calls running, by the epoch they carry.
    running: BTreeMap<u64, usize>,
}

impl Fences {
    /// Whether `target`'s floor is known in `term` (else it must be read from the log and
    /// given to [`Fences::learn`] first). A new term forgets every floor.
    pub fn knows(&mut self, term: u64, target: &str) -> bool {
        if self.term != term {
            self.term = term;
            self.targets.clear();
        }
        self.targets.contains_key(target)
    }

    /// Takes `floor` (read from the log in `term`) as `target`'s, unless a higher one is known.
    pub fn learn(&mut self, term: u64, target: &Arc<str>, floor: u64) {
        if self.term != term {
            return;
        }
        let f = self.targets.entry(Arc::clone(target)).or_default();
        f.floor = f.floor.max(floor);
    }

    /// Admits a call tagged `t` (counted as running until [`Fences::leave`]), or refuses it
    /// with the floor it is below.
    pub fn enter(&mut self, t: &TargetEpoch) -> Result<(), u64> {
        let f = self.targets.entry(Arc::clone(&t.name)).or_default();
        if t.epoch < f.floor {
            return Err(f.floor);
        }
        *f.running.entry(t.epoch).or_default() += 1;
        Ok(())
    }

    /// A call admitted by [`Fences::enter`] ended (in `term`: a call of an earlier term was
    /// forgotten with it).
    pub fn leave(&mut self, term: u64, t: &TargetEpoch) {
        if self.term != term {
            return;
        }
        if let Some(f) = self.targets.get_mut(&t.name) {
            if let Some(n) = f.running.get_mut(&t.epoch) {
                *n -= 1;
                if *n == 0 {
                    f.running.remove(&t.epoch);
                }
            }
        }
    }

    /// Raises `t.name`'s floor to `t.epoch`; `Err(floor)` when a greater epoch fenced it
    /// already (the caller is no longer the newest owner).
    pub fn raise(&mut self, t: &TargetEpoch) -> Result<(), u64> {
        let f = self.targets.entry(Arc::clone(&t.name)).or_default();
        if t.epoch < f.floor {
            return Err(f.floor);
        }
        f.floor = t.epoch;
        Ok(())
    }

    /// Whether no call tagged with an epoch below `t.epoch` runs for `t.name`.
    pub fn drained(&self, t: &TargetEpoch) -> bool {
        self.targets
            .get(&t.name)
            .is_none_or(|f| f.running.range(..t.epoch).next().is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(epoch: u64) -> TargetEpoch {
        TargetEpoch {
            name: "ckpt".into(),
            epoch,
        }
    }

    #[test]
    fn a_call_below_the_floor_is_refused_and_one_at_or_above_it_runs() {
        let mut f = Fences::default();
        assert!(!f.knows(3, "ckpt"));
        f.learn(3, &"ckpt".into(), 10);
        assert!(f.knows(3, "ckpt"));
        assert_eq!(f.enter(&tag(9)), Err(10));
        assert_eq!(f.enter(&tag(10)), Ok(()));
        assert_eq!(f.enter(&tag(11)), Ok(()));
    }

    #[test]
    fn a_raise_waits_for_older_calls_already_running_but_not_for_its_own() {
        let mut f = Fences::default();
        f.knows(1, "ckpt");
        f.learn(1, &"ckpt".into(), 0);
        f.enter(&tag(5)).unwrap();
        f.enter(&tag(5)).unwrap();
        f.enter(&tag(8)).unwrap();
        assert_eq!(f.raise(&tag(8)), Ok(()));
        assert!(!f.drained(&tag(8)));
        // Refused from the raise on, even while older calls still run.
        assert_eq!(f.enter(&tag(5)), Err(8));
        f.leave(1, &tag(5));
        assert!(!f.drained(&tag(8)));
        f.leave(1, &tag(5));
        assert!(f.drained(&tag(8)));
    }

    #[test]
    fn a_raise_below_the_floor_is_refused_and_an_equal_one_is_a_retry() {
        let mut f = Fences::default();
        f.knows(1, "ckpt");
        assert_eq!(f.raise(&tag(8)), Ok(()));
        assert_eq!(f.raise(&tag(8)), Ok(()));
        assert_eq!(f.raise(&tag(7)), Err(8));
    }

    #[test]
    fn a_new_term_forgets_the_floors_and_ignores_calls_of_the_old_one() {
        let mut f = Fences::default();
        f.knows(1, "ckpt");
        f.learn(1, &"ckpt".into(), 4);
        f.enter(&tag(4)).unwrap();
        assert!(!f.knows(2, "ckpt"));
        // A learn or leave from the earlier term's calls changes nothing now.
        f.learn(1, &"ckpt".into(), 9);
        f.leave(1, &tag(4));
        f.learn(2, &"ckpt".into(), 4);
        assert_eq!(f.enter(&tag(3)), Err(4));
        assert!(f.drained(&tag(5)));
    }
}
