//! Byte-range lock manager shared by NFSv3's NLM and (later) NFSv4.1 LOCK.
//!
//! The job: decide, for each file, which owner holds which byte range in which mode, queue
//! blocking requests that conflict, grant them when the conflict goes away, and refuse a wait
//! that would deadlock. It is sans-IO plain data: no clocks, no tasks, no callbacks. Every
//! method returns what the caller must tell clients (an outcome, or the queued requests that
//! became granted), and the caller sends the NLM `GRANTED` callbacks or answers the v4 polls.
//!
//! Contract:
//! * Two locks conflict when their ranges share a byte, their owners differ and at least one
//!   is a write lock. Locks of the same [`LockOwner`] never conflict.
//! * POSIX semantics per owner: a new lock replaces the owner's own locks over its range
//!   (upgrade and downgrade), and the owner's adjacent or overlapping locks of one kind merge, so
//!   [`LockManager::locks`] shows each owner's ranges in one canonical form.
//! * A request that conflicts with no held lock is granted at once, even if other requests are
//!   queued on the file (as POSIX does; queued requests get no priority).
//! * After a release, the file's queue is walked in FIFO order and every waiter that conflicts
//!   with no held lock is granted (the check includes locks granted earlier in the same walk).
//!   The walk repeats until it grants nothing, because a granted waiter may downgrade its
//!   owner's own lock and so unblock a waiter ahead of it.
//! * [`LockManager::lock`] can only report the caller's own outcome. When it downgrades a write
//!   lock to read, waiters that became compatible stay queued until the next release on the
//!   file, or until the caller asks for them with [`LockManager::grant_waiters`].
//! * A blocking request is refused with [`LockOutcome::Deadlock`] when queuing it would close a
//!   cycle in the wait-for graph (a waiter's owner waits for the owners of the held locks that
//!   conflict with its request), across all files. The check walks every queue, which is cheap
//!   while blocked requests are few, as they are for NLM.
//! * An empty range (`start >= end`) holds nothing and conflicts with nothing.
//! * Files are independent, and a file with no held lock and no waiter has no state.
//!
//! Held locks are checked against the invariants ("an owner's locks never overlap", "locks of
//! different owners never conflict") after every change in debug builds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use backend::FileId;
use bytes::Bytes;

/// Who holds a lock. For NLM: client = the NLM caller_name, owner = (svid, oh) bytes; for
/// NFSv4.1: client = the clientid string, owner = the lock-owner. Locks of the same LockOwner
/// never conflict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockOwner {
    pub client: String,
    pub svid: u32,
    pub oh: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

/// Half-open byte range [start, end); end == u64::MAX means "to end of file and beyond".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRange {
    pub start: u64,
    pub end: u64,
}

impl LockRange {
    /// NLM/POSIX form: offset and length, length 0 = to infinity; offset+len overflowing = to
    /// infinity.
    pub fn from_offset_len(offset: u64, len: u64) -> LockRange {
        let end = match len {
            0 => u64::MAX,
            // Past the largest offset is still "to the end": saturate rather than wrap.
            _ => offset.saturating_add(len),
        };
        LockRange { start: offset, end }
    }

    /// Back to (offset, len) with len 0 for infinity.
    pub fn offset_len(&self) -> (u64, u64) {
        let len = match self.end {
            u64::MAX => 0,
            end => end.saturating_sub(self.start),
        };
        (self.start, len)
    }

    /// Whether the range holds no byte (also true for a malformed `start > end`).
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Whether both ranges contain a common byte.
    pub fn overlaps(&self, other: &LockRange) -> bool {
        self.start.max(other.start) < self.end.min(other.end)
    }

    /// Whether both ranges are non-empty and overlap or meet end to start (so they can merge).
    fn touches(&self, other: &LockRange) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && self.start.max(other.start) <= self.end.min(other.end)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    pub owner: LockOwner,
    pub kind: LockKind,
    pub range: LockRange,
}

impl Lock {
    /// Whether the two locks cannot be held at once: shared byte, other owner, a writer.
    pub fn conflicts(&self, other: &Lock) -> bool {
        let writer = self.kind == LockKind::Write || other.kind == LockKind::Write;
        writer && self.owner != other.owner && self.range.overlaps(&other.range)
    }

    /// The same lock over another range.
    fn with_range(&self, start: u64, end: u64) -> Lock {
        Lock {
            range: LockRange { start, end },
            ..self.clone()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    Granted,
    /// Non-blocking request refused; `holder` is one conflicting lock (for NLM4_DENIED / TEST).
    Denied {
        holder: Lock,
    },
    /// Blocking request queued; it will appear in a later `Grant` list.
    Blocked,
    /// Waiting would close a cycle in the wait-for graph (NLM4_DEADLCK / EDEADLK).
    Deadlock,
}

/// A queued request that became granted because something was released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub file: FileId,
    pub lock: Lock,
}

/// Locks and waiters of one file.
#[derive(Debug, Default)]
struct FileLocks {
    /// Held locks, in no particular order.
    held: Vec<Lock>,
    /// Blocking requests in arrival order; no two are identical.
    queue: VecDeque<Lock>,
}

impl FileLocks {
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.queue.is_empty()
    }

    fn conflict(&self, lock: &Lock) -> Option<&Lock> {
        self.held.iter().find(|held| held.conflicts(lock))
    }

    /// Removes `owner`'s hold on `range`, keeping the parts of its locks outside the range.
    fn remove_range(&mut self, owner: &LockOwner, range: LockRange) {
        let mut kept = Vec::with_capacity(self.held.len() + 1);
        for held in self.held.drain(..) {
            if held.owner != *owner || !held.range.overlaps(&range) {
                kept.push(held);
                continue;
            }
            if held.range.start < range.start {
                kept.push(held.with_range(held.range.start, range.start));
            }
            if range.end < held.range.end {
                kept.push(held.with_range(range.end, held.range.end));
            }
        }
        self.held = kept;
    }

    /// Makes `lock` held: replaces the owner's locks over its range, then merges it with the
    /// owner's same-kind neighbours. The caller has checked that it conflicts with nothing.
    fn apply(&mut self, mut lock: Lock) {
        debug_assert!(
            self.conflict(&lock).is_none(),
            "applied lock conflicts: {lock:?}"
        );
        self.remove_range(&lock.owner, lock.range);
        if lock.range.is_empty() {
            return;
        }
        // After remove_range nothing of the owner overlaps, so at most the two neighbours that
        // end where the lock starts or start where it ends are merged.
        self.held.retain(|held| {
            let merge = held.owner == lock.owner
                && held.kind == lock.kind
                && held.range.touches(&lock.range);
            if merge {
                lock.range.start = lock.range.start.min(held.range.start);
                lock.range.end = lock.range.end.max(held.range.end);
            }
            !merge
        });
        self.held.push(lock);
    }

    /// Grants every waiter that conflicts with no held lock, FIFO, until a walk grants nothing.
    fn grant_waiters(&mut self, file: FileId) -> Vec<Grant> {
        let mut grants = Vec::new();
        loop {
            let granted_before = grants.len();
            let mut still_waiting = VecDeque::with_capacity(self.queue.len());
            while let Some(waiter) = self.queue.pop_front() {
                if self.conflict(&waiter).is_some() {
                    still_waiting.push_back(waiter);
                    continue;
                }
                self.apply(waiter.clone());
                grants.push(Grant { file, lock: waiter });
            }
            self.queue = still_waiting;
            if grants.len() == granted_before {
                return grants;
            }
        }
    }

    /// Drops the held locks and waiters whose owner matches `is_dropped`.
    fn release(&mut self, is_dropped: impl Fn(&LockOwner) -> bool) {
        self.held.retain(|held| !is_dropped(&held.owner));
        self.queue.retain(|waiter| !is_dropped(&waiter.owner));
    }

    /// Asserts the invariants of the held set and the queue (quadratic, so debug builds only).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        for (i, a) in self.held.iter().enumerate() {
            debug_assert!(!a.range.is_empty(), "an empty lock is held: {a:?}");
            for b in &self.held[i + 1..] {
                if a.owner != b.owner {
                    debug_assert!(!a.conflicts(b), "held locks of different owners conflict");
                    continue;
                }
                debug_assert!(!a.range.overlaps(&b.range), "an owner's locks overlap");
                debug_assert!(
                    a.kind != b.kind || !a.range.touches(&b.range),
                    "an owner's adjacent same-kind locks are not merged: {a:?} {b:?}"
                );
            }
        }
        for (i, a) in self.queue.iter().enumerate() {
            debug_assert!(
                !self.queue.iter().skip(i + 1).any(|b| a == b),
                "queued twice"
            );
        }
    }
}

/// Byte-range locks of all files. See the module docs for the contract.
#[derive(Debug, Default)]
pub struct LockManager {
    /// Only files with a held lock or a waiter have an entry.
    files: BTreeMap<FileId, FileLocks>,
}

impl LockManager {
    pub fn new() -> LockManager {
        LockManager::default()
    }

    /// A conflicting lock held by another owner, if any (NLM TEST, v4 LOCKT). Does not change
    /// state.
    pub fn test(&self, file: FileId, lock: &Lock) -> Option<Lock> {
        self.files.get(&file)?.conflict(lock).cloned()
    }

    /// Acquires (POSIX semantics: the owner's own overlapping locks are replaced by the new kind
    /// over the range — upgrades and downgrades — and adjacent/overlapping same-kind ranges of
    /// the owner merge).
    /// `block`: queue the request when it conflicts (FIFO per file) instead of denying.
    /// A repeated identical blocking request from the same owner while queued returns Blocked
    /// again without queueing twice (NLM clients retransmit).
    ///
    /// A granted request also removes its identical queued copy, if any. A downgrade does not
    /// grant waiters here; see [`LockManager::grant_waiters`].
    pub fn lock(&mut self, file: FileId, lock: Lock, block: bool) -> LockOutcome {
        let Some(holder) = self.test(file, &lock) else {
            let state = self.files.entry(file).or_default();
            // A retransmission that is granted now must not be granted again from the queue.
            state.queue.retain(|waiter| *waiter != lock);
            state.apply(lock);
            self.settle(file);
            return LockOutcome::Granted;
        };
        if !block {
            return LockOutcome::Denied { holder };
        }
        let queued = self.files.get(&file).map(|state| &state.queue);
        if queued.is_some_and(|queue| queue.contains(&lock)) {
            return LockOutcome::Blocked;
        }
        if self.would_deadlock(file, &lock) {
            return LockOutcome::Deadlock;
        }
        // A holder was found, so the file has state.
        self.files.entry(file).or_default().queue.push_back(lock);
        self.settle(file);
        LockOutcome::Blocked
    }

    /// Releases the owner's locks over `range` (splitting locks that extend past it). Returns
    /// queued requests that can now be granted (they are granted as part of this call: state
    /// already updated).
    pub fn unlock(&mut self, file: FileId, owner: &LockOwner, range: LockRange) -> Vec<Grant> {
        let Some(state) = self.files.get_mut(&file) else {
            return Vec::new();
        };
        state.remove_range(owner, range);
        let grants = state.grant_waiters(file);
        self.settle(file);
        grants
    }

    /// Removes a queued (not yet granted) request matching owner/kind/range. Returns whether one
    /// was removed. Nothing becomes grantable by this, since waiters never block each other.
    pub fn cancel(&mut self, file: FileId, lock: &Lock) -> bool {
        let Some(state) = self.files.get_mut(&file) else {
            return false;
        };
        let Some(position) = state.queue.iter().position(|waiter| waiter == lock) else {
            return false;
        };
        state.queue.remove(position);
        self.settle(file);
        true
    }

    /// Drops every lock and queued request of a client (NLM FREE_ALL, NSM SM_NOTIFY of a
    /// rebooted client, lease expiry). Returns the requests of other clients granted as a
    /// result, in file order.
    pub fn release_client(&mut self, client: &str) -> Vec<Grant> {
        let mut grants = Vec::new();
        for (&file, state) in self.files.iter_mut() {
            state.release(|owner| owner.client == client);
            grants.extend(state.grant_waiters(file));
            state.check_invariants();
        }
        self.files.retain(|_, state| !state.is_empty());
        grants
    }

    /// Drops every lock and queued request of one owner on one file (v4
    /// close/release_lockowner).
    pub fn release_owner(&mut self, file: FileId, owner: &LockOwner) -> Vec<Grant> {
        let Some(state) = self.files.get_mut(&file) else {
            return Vec::new();
        };
        state.release(|held_by| held_by == owner);
        let grants = state.grant_waiters(file);
        self.settle(file);
        grants
    }

    /// Grants the file's queued requests that no longer conflict with any held lock. Call it
    /// after a [`LockManager::lock`] that downgraded a write lock, to wake readers at once
    /// rather than at the next release. Returns nothing new in every other case.
    pub fn grant_waiters(&mut self, file: FileId) -> Vec<Grant> {
        let Some(state) = self.files.get_mut(&file) else {
            return Vec::new();
        };
        let grants = state.grant_waiters(file);
        self.settle(file);
        grants
    }

    /// Held locks on a file, sorted by start (tests, debugging, admin).
    pub fn locks(&self, file: FileId) -> Vec<Lock> {
        let mut locks = self
            .files
            .get(&file)
            .map(|state| state.held.clone())
            .unwrap_or_default();
        locks.sort_by(|a, b| {
            let key = |lock: &Lock| (lock.range.start, lock.range.end);
            key(a).cmp(&key(b)).then_with(|| a.owner.cmp(&b.owner))
        });
        locks
    }

    /// Number of queued requests on a file.
    pub fn waiting(&self, file: FileId) -> usize {
        self.files.get(&file).map_or(0, |state| state.queue.len())
    }

    /// Held locks across all files (for status).
    pub fn held_count(&self) -> usize {
        self.files.values().map(|f| f.held.len()).sum()
    }

    /// Clients currently holding or waiting for any lock (for NSM monitoring bookkeeping),
    /// sorted and without duplicates.
    pub fn clients(&self) -> Vec<String> {
        let owners = self
            .files
            .values()
            .flat_map(|state| state.held.iter().chain(state.queue.iter()));
        let clients: BTreeSet<&str> = owners.map(|lock| lock.owner.client.as_str()).collect();
        clients.into_iter().map(str::to_owned).collect()
    }

    /// Checks the file's invariants after a change and forgets the file if it became empty.
    fn settle(&mut self, file: FileId) {
        let Some(state) = self.files.get(&file) else {
            return;
        };
        state.check_invariants();
        if state.is_empty() {
            self.files.remove(&file);
        }
    }

    /// Whether queuing `request` on `file` would let its owner reach itself in the wait-for
    /// graph, starting from the owners of the held locks that conflict with it.
    fn would_deadlock(&self, file: FileId, request: &Lock) -> bool {
        let waits_for = self.wait_for_graph();
        let mut stack: Vec<&LockOwner> = match self.files.get(&file) {
            Some(state) => state
                .held
                .iter()
                .filter(|held| held.conflicts(request))
                .map(|held| &held.owner)
                .collect(),
            None => Vec::new(),
        };
        let mut visited = BTreeSet::new();
        while let Some(owner) = stack.pop() {
            if *owner == request.owner {
                return true;
            }
            if visited.insert(owner) {
                stack.extend(waits_for.get(owner).into_iter().flatten());
            }
        }
        false
    }

    /// For each owner with a queued request, the owners holding locks that conflict with it.
    fn wait_for_graph(&self) -> BTreeMap<&LockOwner, Vec<&LockOwner>> {
        let mut graph: BTreeMap<&LockOwner, Vec<&LockOwner>> = BTreeMap::new();
        for state in self.files.values() {
            for waiter in &state.queue {
                let holders = state.held.iter().filter(|held| held.conflicts(waiter));
                let edges = graph.entry(&waiter.owner).or_default();
                edges.extend(holders.map(|held| &held.owner));
            }
        }
        graph
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests name one rule each. The last test drives random operations against a
    //! brute-force model (one cell per byte) to catch what the named cases miss.

    use super::*;

    const INF: u64 = u64::MAX;

    fn owner(client: &str) -> LockOwner {
        LockOwner {
            client: client.to_owned(),
            svid: 7,
            oh: Bytes::from_static(b"oh"),
        }
    }

    fn file(ino: u64) -> FileId {
        FileId { ino, generation: 1 }
    }

    fn read(owner: &LockOwner, start: u64, end: u64) -> Lock {
        Lock {
            owner: owner.clone(),
            kind: LockKind::Read,
            range: LockRange { start, end },
        }
    }

    fn write(owner: &LockOwner, start: u64, end: u64) -> Lock {
        Lock {
            kind: LockKind::Write,
            ..read(owner, start, end)
        }
    }

    fn range(start: u64, end: u64) -> LockRange {
        LockRange { start, end }
    }

    #[test]
    fn from_offset_len_with_zero_length_reaches_infinity() {
        assert_eq!(LockRange::from_offset_len(10, 0), range(10, INF));
        assert_eq!(LockRange::from_offset_len(10, 5), range(10, 15));
    }

    #[test]
    fn from_offset_len_reaches_infinity_when_offset_plus_length_overflows() {
        assert_eq!(LockRange::from_offset_len(INF - 1, 5), range(INF - 1, INF));
        assert_eq!(LockRange::from_offset_len(1, INF), range(1, INF));
    }

    #[test]
    fn offset_len_round_trips_finite_and_infinite_ranges() {
        for (offset, len) in [(0, 1), (10, 5), (10, 0), (0, 0), (INF - 3, 2)] {
            assert_eq!(
                LockRange::from_offset_len(offset, len).offset_len(),
                (offset, len)
            );
        }
        assert_eq!(
            range(9, 3).offset_len(),
            (9, 0),
            "a malformed range has no length"
        );
    }

    #[test]
    fn ranges_overlap_only_when_they_share_a_byte() {
        assert!(range(0, 10).overlaps(&range(9, 20)));
        assert!(range(0, INF).overlaps(&range(INF - 1, INF)));
        assert!(
            !range(0, 10).overlaps(&range(10, 20)),
            "adjacent ranges share no byte"
        );
        assert!(
            !range(5, 5).overlaps(&range(0, 10)),
            "an empty range shares no byte"
        );
        assert!(range(0, 10).touches(&range(10, 20)));
        assert!(!range(0, 10).touches(&range(11, 20)));
    }

    #[test]
    fn read_locks_of_different_owners_share_a_range() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        assert_eq!(
            manager.lock(file(1), read(&a, 0, 10), false),
            LockOutcome::Granted
        );
        assert_eq!(
            manager.lock(file(1), read(&b, 5, 15), false),
            LockOutcome::Granted
        );
        assert_eq!(
            manager.locks(file(1)),
            vec![read(&a, 0, 10), read(&b, 5, 15)]
        );
    }

    #[test]
    fn write_lock_conflicts_with_read_and_write_of_other_owners() {
        let mut manager = LockManager::new();
        let (a, b, c) = (owner("a"), owner("b"), owner("c"));
        manager.lock(file(1), read(&a, 0, 10), false);
        manager.lock(file(1), write(&b, 20, 30), false);
        let denied = |holder| LockOutcome::Denied { holder };
        assert_eq!(
            manager.lock(file(1), write(&c, 9, 12), false),
            denied(read(&a, 0, 10))
        );
        assert_eq!(
            manager.lock(file(1), read(&c, 29, INF), false),
            denied(write(&b, 20, 30))
        );
        assert_eq!(
            manager.lock(file(1), write(&c, 10, 20), false),
            LockOutcome::Granted
        );
    }

    #[test]
    fn same_owner_never_conflicts_with_itself() {
        let mut manager = LockManager::new();
        let a = owner("a");
        manager.lock(file(1), write(&a, 0, 10), false);
        assert_eq!(manager.test(file(1), &write(&a, 0, 10)), None);
        assert_eq!(
            manager.lock(file(1), write(&a, 5, 20), false),
            LockOutcome::Granted
        );
        assert_eq!(manager.locks(file(1)), vec![write(&a, 0, 20)]);
    }

    #[test]
    fn same_client_with_another_svid_is_another_owner() {
        let mut manager = LockManager::new();
        let a = owner("a");
        let a2 = LockOwner {
            svid: 8,
            ..a.clone()
        };
        manager.lock(file(1), write(&a, 0, 10), false);
        let outcome = manager.lock(file(1), write(&a2, 0, 10), false);
        assert_eq!(
            outcome,
            LockOutcome::Denied {
                holder: write(&a, 0, 10)
            }
        );
    }

    #[test]
    fn upgrading_part_of_a_read_lock_splits_it_around_the_write() {
        let mut manager = LockManager::new();
        let a = owner("a");
        manager.lock(file(1), read(&a, 0, 30), false);
        assert_eq!(
            manager.lock(file(1), write(&a, 10, 20), false),
            LockOutcome::Granted
        );
        let expected = vec![read(&a, 0, 10), write(&a, 10, 20), read(&a, 20, 30)];
        assert_eq!(manager.locks(file(1)), expected);
    }

    #[test]
    fn upgrade_is_denied_while_another_owner_reads_the_range() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), read(&a, 0, 30), false);
        manager.lock(file(1), read(&b, 25, 26), false);
        let outcome = manager.lock(file(1), write(&a, 0, INF), false);
        assert_eq!(
            outcome,
            LockOutcome::Denied {
                holder: read(&b, 25, 26)
            }
        );
        assert_eq!(
            manager.locks(file(1)),
            vec![read(&a, 0, 30), read(&b, 25, 26)]
        );
    }

    #[test]
    fn downgrading_part_of_a_write_lock_splits_it_around_the_read() {
        let mut manager = LockManager::new();
        let a = owner("a");
        manager.lock(file(1), write(&a, 0, INF), false);
        assert_eq!(
            manager.lock(file(1), read(&a, 10, 20), false),
            LockOutcome::Granted
        );
        let expected = vec![write(&a, 0, 10), read(&a, 10, 20), write(&a, 20, INF)];
        assert_eq!(manager.locks(file(1)), expected);
    }

    #[test]
    fn unlocking_the_middle_splits_one_lock_into_two() {
        let mut manager = LockManager::new();
        let a = owner("a");
        manager.lock(file(1), write(&a, 0, 30), false);
        assert_eq!(manager.unlock(file(1), &a, range(10, 20)), vec![]);
        assert_eq!(
            manager.locks(file(1)),
            vec![write(&a, 0, 10), write(&a, 20, 30)]
        );
    }

    #[test]
    fn unlocking_a_range_the_owner_does_not_hold_is_a_no_op() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        assert_eq!(manager.unlock(file(1), &a, range(10, 20)), vec![]);
        assert_eq!(manager.unlock(file(1), &b, range(0, INF)), vec![]);
        assert_eq!(manager.unlock(file(2), &a, range(0, INF)), vec![]);
        assert_eq!(manager.locks(file(1)), vec![write(&a, 0, 10)]);
    }

    #[test]
    fn adjacent_and_overlapping_same_kind_locks_of_an_owner_merge() {
        let mut manager = LockManager::new();
        let a = owner("a");
        manager.lock(file(1), read(&a, 0, 10), false);
        manager.lock(file(1), read(&a, 20, 30), false);
        manager.lock(file(1), read(&a, 10, 20), false);
        assert_eq!(manager.locks(file(1)), vec![read(&a, 0, 30)]);
        manager.lock(file(1), read(&a, 25, INF), false);
        assert_eq!(manager.locks(file(1)), vec![read(&a, 0, INF)]);
        manager.lock(file(1), write(&a, 40, 50), false);
        manager.lock(file(1), write(&a, 50, 60), false);
        let expected = vec![read(&a, 0, 40), write(&a, 40, 60), read(&a, 60, INF)];
        assert_eq!(manager.locks(file(1)), expected);
    }

    #[test]
    fn empty_range_is_granted_and_holds_nothing() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        assert_eq!(
            manager.lock(file(1), write(&b, 5, 5), false),
            LockOutcome::Granted
        );
        assert_eq!(manager.locks(file(1)), vec![write(&a, 0, 10)]);
        assert_eq!(
            manager.lock(file(2), write(&b, INF, INF), false),
            LockOutcome::Granted
        );
        assert_eq!(
            manager.clients(),
            vec!["a".to_owned()],
            "no state for file 2"
        );
    }

    #[test]
    fn blocked_request_is_granted_when_the_holder_unlocks() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        assert_eq!(
            manager.lock(file(1), read(&b, 5, 15), true),
            LockOutcome::Blocked
        );
        assert_eq!(manager.waiting(file(1)), 1);
        assert_eq!(
            manager.unlock(file(1), &a, range(0, 5)),
            vec![],
            "still conflicts"
        );
        let grants = manager.unlock(file(1), &a, range(5, 10));
        assert_eq!(
            grants,
            vec![Grant {
                file: file(1),
                lock: read(&b, 5, 15)
            }]
        );
        assert_eq!(manager.locks(file(1)), vec![read(&b, 5, 15)]);
        assert_eq!(manager.waiting(file(1)), 0);
    }

    #[test]
    fn waiters_are_granted_in_fifo_order() {
        let mut manager = LockManager::new();
        let (a, b, c) = (owner("a"), owner("b"), owner("c"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), write(&b, 0, 10), true);
        manager.lock(file(1), write(&c, 0, 10), true);
        let grants = manager.unlock(file(1), &a, range(0, INF));
        assert_eq!(
            grants,
            vec![Grant {
                file: file(1),
                lock: write(&b, 0, 10)
            }]
        );
        let grants = manager.unlock(file(1), &b, range(0, INF));
        assert_eq!(
            grants,
            vec![Grant {
                file: file(1),
                lock: write(&c, 0, 10)
            }]
        );
    }

    #[test]
    fn compatible_waiters_behind_a_still_blocked_writer_are_granted() {
        let mut manager = LockManager::new();
        let (a, b, c, d) = (owner("a"), owner("b"), owner("c"), owner("d"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), read(&d, 20, 30), false);
        manager.lock(file(1), write(&b, 0, 30), true);
        manager.lock(file(1), read(&c, 0, 10), true);
        let grants = manager.unlock(file(1), &a, range(0, 10));
        assert_eq!(
            grants,
            vec![Grant {
                file: file(1),
                lock: read(&c, 0, 10)
            }]
        );
        assert_eq!(manager.waiting(file(1)), 1, "the writer still waits for d");
    }

    #[test]
    fn a_granted_waiter_that_downgrades_its_owner_unblocks_waiters_ahead_of_it() {
        let mut manager = LockManager::new();
        let (a, b, c) = (owner("a"), owner("b"), owner("c"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), write(&b, 15, 20), false);
        manager.lock(file(1), read(&c, 0, 5), true);
        manager.lock(file(1), read(&a, 0, 20), true);
        let grants = manager.unlock(file(1), &b, range(0, INF));
        let expected = vec![
            Grant {
                file: file(1),
                lock: read(&a, 0, 20),
            },
            Grant {
                file: file(1),
                lock: read(&c, 0, 5),
            },
        ];
        assert_eq!(grants, expected);
    }

    #[test]
    fn downgrade_leaves_readers_queued_until_grant_waiters_is_called() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), read(&b, 0, 10), true);
        assert_eq!(
            manager.lock(file(1), read(&a, 0, 10), false),
            LockOutcome::Granted
        );
        assert_eq!(manager.waiting(file(1)), 1);
        let grants = manager.grant_waiters(file(1));
        assert_eq!(
            grants,
            vec![Grant {
                file: file(1),
                lock: read(&b, 0, 10)
            }]
        );
        assert_eq!(manager.grant_waiters(file(1)), vec![], "granted once");
    }

    #[test]
    fn retransmission_granted_after_a_downgrade_leaves_the_queue() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), read(&b, 0, 10), true);
        manager.lock(file(1), read(&a, 0, 10), false);
        assert_eq!(
            manager.lock(file(1), read(&b, 0, 10), true),
            LockOutcome::Granted
        );
        assert_eq!(manager.waiting(file(1)), 0);
        assert_eq!(manager.grant_waiters(file(1)), vec![], "no second grant");
    }

    #[test]
    fn cancel_removes_a_queued_request() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), write(&b, 0, 10), true);
        assert!(
            !manager.cancel(file(1), &read(&b, 0, 10)),
            "kind must match"
        );
        assert!(
            !manager.cancel(file(1), &write(&b, 0, 11)),
            "range must match"
        );
        assert!(manager.cancel(file(1), &write(&b, 0, 10)));
        assert!(!manager.cancel(file(1), &write(&b, 0, 10)), "already gone");
        assert_eq!(manager.waiting(file(1)), 0);
        assert_eq!(manager.unlock(file(1), &a, range(0, INF)), vec![]);
        assert_eq!(manager.clients(), Vec::<String>::new(), "no state left");
    }

    #[test]
    fn retransmitted_blocking_request_is_not_queued_twice() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        assert_eq!(
            manager.lock(file(1), write(&b, 0, 10), true),
            LockOutcome::Blocked
        );
        assert_eq!(
            manager.lock(file(1), write(&b, 0, 10), true),
            LockOutcome::Blocked
        );
        assert_eq!(manager.waiting(file(1)), 1);
        assert_eq!(manager.unlock(file(1), &a, range(0, 10)).len(), 1);
    }

    #[test]
    fn retransmission_after_the_grant_is_granted_again_without_a_second_grant() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), write(&b, 0, 10), true);
        manager.unlock(file(1), &a, range(0, 10));
        assert_eq!(
            manager.lock(file(1), write(&b, 0, 10), true),
            LockOutcome::Granted
        );
        assert_eq!(manager.locks(file(1)), vec![write(&b, 0, 10)]);
        assert_eq!(manager.waiting(file(1)), 0);
    }

    #[test]
    fn deadlock_across_two_files_is_detected() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(2), write(&b, 0, 10), false);
        assert_eq!(
            manager.lock(file(2), write(&a, 0, 10), true),
            LockOutcome::Blocked
        );
        assert_eq!(
            manager.lock(file(1), write(&b, 0, 10), true),
            LockOutcome::Deadlock
        );
        assert_eq!(manager.waiting(file(1)), 0, "a refused wait is not queued");
        assert_eq!(
            manager.lock(file(1), write(&b, 10, 20), true),
            LockOutcome::Granted
        );
    }

    #[test]
    fn deadlock_through_a_third_owner_is_detected() {
        let mut manager = LockManager::new();
        let (a, b, c) = (owner("a"), owner("b"), owner("c"));
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), write(&b, 10, 20), false);
        manager.lock(file(1), write(&c, 20, 30), false);
        assert_eq!(
            manager.lock(file(1), write(&a, 10, 11), true),
            LockOutcome::Blocked
        );
        assert_eq!(
            manager.lock(file(1), write(&b, 20, 21), true),
            LockOutcome::Blocked
        );
        assert_eq!(
            manager.lock(file(1), read(&c, 5, 6), true),
            LockOutcome::Deadlock
        );
        assert_eq!(
            manager.lock(file(1), read(&c, 10, 11), true),
            LockOutcome::Deadlock
        );
    }

    #[test]
    fn release_client_drops_its_locks_and_waiters_and_grants_others() {
        let mut manager = LockManager::new();
        let (a, a2, b) = (
            owner("a"),
            LockOwner {
                svid: 9,
                ..owner("a")
            },
            owner("b"),
        );
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(2), read(&a2, 0, INF), false);
        manager.lock(file(1), write(&b, 0, 10), true);
        manager.lock(file(2), write(&b, 0, 10), true);
        manager.lock(file(3), write(&b, 0, 10), false);
        manager.lock(file(3), write(&a, 0, 10), true);
        assert_eq!(manager.clients(), vec!["a".to_owned(), "b".to_owned()]);
        let grants = manager.release_client("a");
        let expected = vec![
            Grant {
                file: file(1),
                lock: write(&b, 0, 10),
            },
            Grant {
                file: file(2),
                lock: write(&b, 0, 10),
            },
        ];
        assert_eq!(grants, expected);
        assert_eq!(manager.waiting(file(3)), 0);
        assert_eq!(manager.clients(), vec!["b".to_owned()]);
    }

    #[test]
    fn release_owner_drops_only_that_owner_on_that_file() {
        let mut manager = LockManager::new();
        let (a, a2, b) = (
            owner("a"),
            LockOwner {
                svid: 9,
                ..owner("a")
            },
            owner("b"),
        );
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.lock(file(1), write(&a2, 20, 30), false);
        manager.lock(file(2), write(&a, 0, 10), false);
        manager.lock(file(1), write(&b, 0, 10), true);
        let grants = manager.release_owner(file(1), &a);
        assert_eq!(
            grants,
            vec![Grant {
                file: file(1),
                lock: write(&b, 0, 10)
            }]
        );
        assert_eq!(
            manager.locks(file(1)),
            vec![write(&b, 0, 10), write(&a2, 20, 30)]
        );
        assert_eq!(manager.locks(file(2)), vec![write(&a, 0, 10)]);
    }

    #[test]
    fn test_reports_a_conflicting_holder_without_changing_state() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        manager.lock(file(1), read(&a, 0, 10), false);
        assert_eq!(
            manager.test(file(1), &write(&b, 9, 10)),
            Some(read(&a, 0, 10))
        );
        assert_eq!(manager.test(file(1), &read(&b, 0, 10)), None);
        assert_eq!(manager.test(file(1), &write(&b, 10, INF)), None);
        assert_eq!(manager.test(file(2), &write(&b, 0, INF)), None);
        assert_eq!(manager.locks(file(1)), vec![read(&a, 0, 10)]);
    }

    #[test]
    fn locks_on_different_files_are_independent() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        let other_generation = FileId {
            ino: 1,
            generation: 2,
        };
        manager.lock(file(1), write(&a, 0, INF), false);
        assert_eq!(
            manager.lock(file(2), write(&b, 0, INF), false),
            LockOutcome::Granted
        );
        assert_eq!(
            manager.lock(other_generation, write(&b, 0, INF), false),
            LockOutcome::Granted
        );
        manager.unlock(file(1), &a, range(0, INF));
        assert_eq!(manager.locks(file(1)), vec![]);
        assert_eq!(manager.locks(file(2)), vec![write(&b, 0, INF)]);
    }

    #[test]
    fn empty_file_state_is_removed() {
        let mut manager = LockManager::new();
        let (a, b) = (owner("a"), owner("b"));
        for ino in 0..100 {
            manager.lock(file(ino), write(&a, 0, 10), false);
            manager.lock(file(ino), write(&b, 0, 10), true);
            manager.release_owner(file(ino), &b);
            manager.unlock(file(ino), &a, range(0, INF));
        }
        manager.lock(file(1), write(&a, 0, 10), false);
        manager.release_client("a");
        assert!(manager.files.is_empty());
    }

    /// Goal: the interval code (splits, merges, queue, deadlock check) agrees with a model that
    /// is too simple to be wrong. Method: 3 owners on one file, ranges inside 0..64 plus
    /// [x, infinity), ~2000 random operations from a fixed xorshift seed; after each one the
    /// outcome, the grants, the held locks and the queue length must match the model.
    #[test]
    fn random_operations_match_a_byte_map_model() {
        let owners = [owner("a"), owner("b"), owner("c")];
        let mut manager = LockManager::new();
        let mut model = Model::new();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // How often each outcome occurred, so a generator change cannot quietly stop covering one.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for step in 0..2000 {
            let who = rng.below(3) as usize;
            let kind = if rng.below(2) == 0 {
                LockKind::Read
            } else {
                LockKind::Write
            };
            let lock = Lock {
                owner: owners[who].clone(),
                kind,
                range: rng.range(),
            };
            let context = format!("step {step}: {lock:?}");
            match rng.below(20) {
                0..=7 => {
                    let block = rng.below(3) == 0;
                    let outcome = manager.lock(file(1), lock.clone(), block);
                    let expected = model.lock(who, &lock, block);
                    let name = format!("{outcome:?}");
                    let name = name.split([' ', '{']).next().unwrap_or_default();
                    *seen.entry(name.to_owned()).or_default() += 1;
                    match (&outcome, &expected) {
                        (LockOutcome::Denied { holder }, LockOutcome::Denied { .. }) => {
                            assert!(holder.conflicts(&lock), "{context}");
                            assert!(manager.locks(file(1)).contains(holder), "{context}");
                        }
                        _ => assert_eq!(outcome, expected, "{context}"),
                    }
                }
                8..=15 => {
                    let grants = manager.unlock(file(1), &lock.owner, lock.range);
                    assert_eq!(grants, model.unlock(who, lock.range), "{context}");
                }
                16..=17 => {
                    let queued = model.queue.get(rng.below(4) as usize).map(|(_, lock)| lock);
                    let target = queued.cloned().unwrap_or(lock);
                    let removed = model.cancel(&target);
                    assert_eq!(manager.cancel(file(1), &target), removed, "{context}");
                }
                18 => {
                    let grants = manager.release_owner(file(1), &lock.owner);
                    assert_eq!(grants, model.release(who), "{context}");
                }
                _ => assert_eq!(
                    manager.grant_waiters(file(1)),
                    model.grant_waiters(),
                    "{context}"
                ),
            }
            assert_eq!(manager.locks(file(1)), model.locks(&owners), "{context}");
            assert_eq!(manager.waiting(file(1)), model.queue.len(), "{context}");
            *seen.entry("Grant".to_owned()).or_default() += model.granted;
            model.granted = 0;
        }
        for name in ["Granted", "Denied", "Blocked", "Deadlock", "Grant"] {
            let count = seen.get(name).copied().unwrap_or_default();
            assert!(count >= 10, "only {count} of {name}: {seen:?}");
        }
    }

    /// Cells 0..64 are bytes 0..64; cell 64 stands for every byte from 64 to infinity.
    const CELLS: usize = 65;

    /// One file, three owners, one cell per byte.
    struct Model {
        held: [[Option<LockKind>; CELLS]; 3],
        queue: Vec<(usize, Lock)>,
        /// Requests granted from the queue since the test last looked.
        granted: usize,
    }

    impl Model {
        fn new() -> Model {
            Model {
                held: [[None; CELLS]; 3],
                queue: Vec::new(),
                granted: 0,
            }
        }

        fn cells(range: LockRange) -> std::ops::Range<usize> {
            let end = if range.end == INF {
                CELLS
            } else {
                range.end as usize
            };
            range.start as usize..end
        }

        /// The owners holding a cell of `lock` in a conflicting mode.
        fn blockers(&self, who: usize, lock: &Lock) -> Vec<usize> {
            let conflicting = |held: Option<LockKind>| match held {
                None => false,
                Some(kind) => kind == LockKind::Write || lock.kind == LockKind::Write,
            };
            let blocks = |other: usize| {
                Self::cells(lock.range).any(|cell| conflicting(self.held[other][cell]))
            };
            (0..3)
                .filter(|&other| other != who && blocks(other))
                .collect()
        }

        fn set(&mut self, who: usize, range: LockRange, kind: Option<LockKind>) {
            for cell in Self::cells(range) {
                self.held[who][cell] = kind;
            }
        }

        fn lock(&mut self, who: usize, lock: &Lock, block: bool) -> LockOutcome {
            let blockers = self.blockers(who, lock);
            if blockers.is_empty() {
                self.queue.retain(|(_, waiter)| waiter != lock);
                self.set(who, lock.range, Some(lock.kind));
                return LockOutcome::Granted;
            }
            if !block {
                // The holder is checked against the manager's own locks by the caller.
                return LockOutcome::Denied {
                    holder: lock.clone(),
                };
            }
            if self.queue.iter().any(|(_, waiter)| waiter == lock) {
                return LockOutcome::Blocked;
            }
            if self.reaches(&blockers, who) {
                return LockOutcome::Deadlock;
            }
            self.queue.push((who, lock.clone()));
            LockOutcome::Blocked
        }

        /// Whether `target` is reachable from `from` in the wait-for graph (3 nodes).
        fn reaches(&self, from: &[usize], target: usize) -> bool {
            let mut reached = [false; 3];
            let mut frontier = from.to_vec();
            while let Some(owner) = frontier.pop() {
                if owner == target {
                    return true;
                }
                if std::mem::replace(&mut reached[owner], true) {
                    continue;
                }
                for (waiter, lock) in &self.queue {
                    if *waiter == owner {
                        frontier.extend(self.blockers(owner, lock));
                    }
                }
            }
            false
        }

        fn grant_waiters(&mut self) -> Vec<Grant> {
            let mut grants = Vec::new();
            loop {
                let granted_before = grants.len();
                let mut index = 0;
                while index < self.queue.len() {
                    let (who, lock) = self.queue[index].clone();
                    if self.blockers(who, &lock).is_empty() {
                        self.queue.remove(index);
                        self.set(who, lock.range, Some(lock.kind));
                        grants.push(Grant {
                            file: file(1),
                            lock,
                        });
                        self.granted += 1;
                    } else {
                        index += 1;
                    }
                }
                if grants.len() == granted_before {
                    return grants;
                }
            }
        }

        fn unlock(&mut self, who: usize, range: LockRange) -> Vec<Grant> {
            self.set(who, range, None);
            self.grant_waiters()
        }

        fn cancel(&mut self, lock: &Lock) -> bool {
            let position = self.queue.iter().position(|(_, waiter)| waiter == lock);
            position.map(|index| self.queue.remove(index)).is_some()
        }

        fn release(&mut self, who: usize) -> Vec<Grant> {
            self.queue.retain(|(waiter, _)| *waiter != who);
            self.unlock(who, range(0, INF))
        }

        /// Each owner's maximal runs of one kind, sorted like `LockManager::locks`.
        fn locks(&self, owners: &[LockOwner; 3]) -> Vec<Lock> {
            let mut locks = Vec::new();
            for (who, cells) in self.held.iter().enumerate() {
                let mut start = 0;
                while start < CELLS {
                    let Some(kind) = cells[start] else {
                        start += 1;
                        continue;
                    };
                    let run = cells[start..]
                        .iter()
                        .take_while(|cell| **cell == Some(kind))
                        .count();
                    let end = if start + run == CELLS {
                        INF
                    } else {
                        (start + run) as u64
                    };
                    let range = range(start as u64, end);
                    locks.push(Lock {
                        owner: owners[who].clone(),
                        kind,
                        range,
                    });
                    start += run;
                }
            }
            locks.sort_by(|a, b| {
                let key = |lock: &Lock| (lock.range.start, lock.range.end);
                key(a).cmp(&key(b)).then_with(|| a.owner.cmp(&b.owner))
            });
            locks
        }
    }

    /// Marsaglia's xorshift64: deterministic, so a failing step reproduces on every run.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        /// A non-empty range inside 0..64, or from there to infinity one time in eight.
        fn range(&mut self) -> LockRange {
            let start = self.below(64);
            let end = match self.below(8) {
                0 => INF,
                _ => start + 1 + self.below(64 - start),
            };
            range(start, end)
        }
    }
}
