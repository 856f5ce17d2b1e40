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
    /// The term these floors were learnt in: a new term starts from the log again, and an
    /// older one is never gone back to.
    term: u64,
    targets: HashMap<Arc<str>, Fence>,
}

#[derive(Debug, Default)]
struct Fence {
    /// Whether `floor` includes the floor kept in the log (read in this term).
    learned: bool,
    /// The lowest epoch admitted.
    floor: u64,
    /// Calls running, by the epoch they carry.
    running: BTreeMap<u64, usize>,
}

/// Why [`Fences::enter`] or [`Fences::raise`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Below the target's floor (which it carries): a later owner fenced the target.
    Below(u64),
    /// The term moved on, or the floor was not learnt in it: learn it again, then retry.
    Unlearned,
}

impl Fences {
    /// Moves to `term` if it is newer (forgetting every floor and call of the old one);
    /// whether `target`'s floor was learnt in `term`, so that calls may enter.
    pub fn knows(&mut self, term: u64, target: &str) -> bool {
        if term > self.term {
            self.term = term;
            self.targets.clear();
        }
        term == self.term && self.targets.get(target).is_some_and(|f| f.learned)
    }

    /// Takes `floor` (read from the log in `term`) as `target`'s, unless a higher one is known.
    pub fn learn(&mut self, term: u64, target: &Arc<str>, floor: u64) {
        if self.term != term {
            return;
        }
        let f = self.targets.entry(Arc::clone(target)).or_default();
        f.floor = f.floor.max(floor);
        f.learned = true;
    }

    /// The fence of `t`'s target in `term`, once its floor was learnt.
    fn learned(&mut self, term: u64, t: &TargetEpoch) -> Result<&mut Fence, Refused> {
        if term != self.term {
            return Err(Refused::Unlearned);
        }
        match self.targets.get_mut(&t.name) {
            Some(f) if f.learned => Ok(f),
            _ => Err(Refused::Unlearned),
        }
    }

    /// Admits a call tagged `t` in `term` (counted as running until [`Fences::leave`]).
    pub fn enter(&mut self, term: u64, t: &TargetEpoch) -> Result<(), Refused> {
        let f = self.learned(term, t)?;
        if t.epoch < f.floor {
            return Err(Refused::Below(f.floor));
        }
        *f.running.entry(t.epoch).or_default() += 1;
        Ok(())
    }

    /// A call admitted by [`Fences::enter`] in `term` ended (a call of an earlier term was
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

    /// Raises `t.name`'s floor to `t.epoch` in `term`; `Below(floor)` when a greater epoch
    /// fenced it already (the caller is no longer the newest owner).
    pub fn raise(&mut self, term: u64, t: &TargetEpoch) -> Result<(), Refused> {
        let f = self.learned(term, t)?;
        if t.epoch < f.floor {
            return Err(Refused::Below(f.floor));
        }
        f.floor = t.epoch;
        Ok(())
    }

    /// Whether no call tagged with an epoch below `t.epoch` runs for `t.name` in `term`; a
    /// term that is no longer the current one has none (its calls cannot commit).
    pub fn drained(&self, term: u64, t: &TargetEpoch) -> bool {
        term != self.term
            || self
                .targets
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

    fn learnt(term: u64, floor: u64) -> Fences {
        let mut f = Fences::default();
        assert!(!f.knows(term, "ckpt"));
        f.learn(term, &"ckpt".into(), floor);
        assert!(f.knows(term, "ckpt"));
        f
    }

    #[test]
    fn a_call_below_the_floor_is_refused_and_one_at_or_above_it_runs() {
        let mut f = learnt(3, 10);
        assert_eq!(f.enter(3, &tag(9)), Err(Refused::Below(10)));
        assert_eq!(f.enter(3, &tag(10)), Ok(()));
        assert_eq!(f.enter(3, &tag(11)), Ok(()));
    }

    #[test]
    fn no_call_enters_and_no_raise_holds_before_the_floor_was_learnt_in_the_term() {
        let mut f = Fences::default();
        assert!(!f.knows(1, "ckpt"));
        assert_eq!(f.enter(1, &tag(5)), Err(Refused::Unlearned));
        assert_eq!(f.raise(1, &tag(5)), Err(Refused::Unlearned));
        // Nor does a failed try make the floor look learnt.
        assert!(!f.knows(1, "ckpt"));
    }

    #[test]
    fn a_raise_waits_for_older_calls_already_running_but_not_for_its_own() {
        let mut f = learnt(1, 0);
        f.enter(1, &tag(5)).unwrap();
        f.enter(1, &tag(5)).unwrap();
        f.enter(1, &tag(8)).unwrap();
        assert_eq!(f.raise(1, &tag(8)), Ok(()));
        assert!(!f.drained(1, &tag(8)));
        // Refused from the raise on, even while older calls still run.
        assert_eq!(f.enter(1, &tag(5)), Err(Refused::Below(8)));
        f.leave(1, &tag(5));
        assert!(!f.drained(1, &tag(8)));
        f.leave(1, &tag(5));
        assert!(f.drained(1, &tag(8)));
    }

    #[test]
    fn a_raise_below_the_floor_is_refused_and_an_equal_one_is_a_retry() {
        let mut f = learnt(1, 0);
        assert_eq!(f.raise(1, &tag(8)), Ok(()));
        assert_eq!(f.raise(1, &tag(8)), Ok(()));
        assert_eq!(f.raise(1, &tag(7)), Err(Refused::Below(8)));
    }

    #[test]
    fn a_new_term_forgets_the_floors_and_an_old_one_changes_nothing() {
        let mut f = learnt(1, 4);
        f.enter(1, &tag(4)).unwrap();
        assert!(!f.knows(2, "ckpt"));
        // Calls, learns and raises of the earlier term change nothing now, and that term is
        // never gone back to.
        f.learn(1, &"ckpt".into(), 9);
        f.leave(1, &tag(4));
        assert!(!f.knows(1, "ckpt"));
        assert_eq!(f.enter(1, &tag(4)), Err(Refused::Unlearned));
        assert!(f.drained(1, &tag(5)), "the old term's calls cannot commit");
        f.learn(2, &"ckpt".into(), 4);
        assert_eq!(f.enter(2, &tag(3)), Err(Refused::Below(4)));
        assert!(f.drained(2, &tag(5)));
    }
}
