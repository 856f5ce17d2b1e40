//! Group commit: callers that need a flush share one.
//!
//! Flushes are numbered as they start and run one at a time. A caller needs the first flush
//! that starts after it arrived (that one covers everything the caller did before calling).
//! If no flush is running, the caller runs it itself; otherwise it waits, and whoever finishes
//! the running flush starts the next one for everybody who queued meanwhile.
//!
//! Callers may also announce themselves before the work that precedes their flush
//! ([`GroupCommit::announce`]). A caller about to start a flush first waits, for at most
//! [`GATHER_MAX`], until no announced caller is still working, so that they share it. Without
//! this, callers whose work is serialized elsewhere (the metadata store's write lock, held by a
//! running flush) arrive one at a time, each just after the last flush began, and every one of
//! them pays for a flush of its own.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Error, Result};

#[derive(Default)]
struct State {
    /// Id the next flush will get.
    next: u64,
    /// Every flush with an id below this has finished.
    done: u64,
    running: bool,
    /// Callers waiting for a flush.
    waiting: usize,
    /// Announced callers that have not yet asked for their flush (or withdrawn).
    announced: usize,
    /// Callers waiting for announced ones before starting a flush.
    gathering: usize,
    /// Recent failed flushes and why.
    failed: BTreeMap<u64, String>,
    /// The newest failed flush dropped from `failed` to bound it: the outcome of any flush up
    /// to it is no longer known for sure.
    forgotten: Option<u64>,
}

impl State {
    /// The result of finished flush `id`.
    fn outcome(&self, id: u64) -> Result<()> {
        match self.failed.get(&id) {
            Some(msg) => Err(Error::Io(msg.clone())),
            // A caller that woke this late cannot be told OK: its flush may have failed and
            // been forgotten since. An error is safe (the write verifier changes; clients resend).
            None if self.forgotten.is_some_and(|f| id <= f) => Err(Error::Io(
                "the outcome of this metadata flush is no longer known".into(),
            )),
            None => Ok(()),
        }
    }
}

pub struct GroupCommit {
    state: Mutex<State>,
    finished: Condvar,
    /// Signalled when the last announced caller asks for its flush or withdraws.
    gathered: Condvar,
    /// How long a flush waits at most for announced callers ([`GATHER_MAX`]).
    gather: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::default(),
            finished: Condvar::new(),
            gathered: Condvar::new(),
            gather: GATHER_MAX,
        }
    }
}

/// Failed flush results kept for callers that wake late.
const FAILED_KEPT: usize = 64;

/// How long a flush waits at most for announced callers to join it. It is a bound on the
/// latency this adds, which only callers that share the flush pay.
pub const GATHER_MAX: Duration = Duration::from_millis(1);

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Announces a caller that will call [`GroupCommit::sync_announced`] (or
    /// [`GroupCommit::withdraw`]) soon: a flush about to start waits for it.
    pub fn announce(&self) {
        self.lock().announced += 1;
    }

    /// Withdraws an announcement without asking for a flush.
    pub fn withdraw(&self) {
        let mut st = self.lock();
        self.unannounce(&mut st);
    }

    fn unannounce(&self, st: &mut State) {
        st.announced = st.announced.saturating_sub(1);
        if st.announced == 0 {
            self.gathered.notify_all();
        }
    }

    /// [`GroupCommit::sync`] for an announced caller; ends its announcement.
    pub fn sync_announced(&self, flush: impl Fn() -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        self.unannounce(&mut st);
        self.sync_locked(st, flush)
    }

    /// Returns once a flush that started after this call has finished, with its result.
    pub fn sync(&self, flush: impl Fn() -> Result<()>) -> Result<()> {
        let st = self.lock();
        self.sync_locked(st, flush)
    }

    fn sync_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        flush: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let need = st.next;
        let mut gathered = false;
        loop {
            if st.done > need {
                return st.outcome(need);
            }
            if !st.running && st.announced > 0 && !gathered {
                gathered = true;
                // Let announced callers join this flush (they are still doing the work it
                // must cover), for a bounded time.
                let deadline = Instant::now() + self.gather;
                st.gathering += 1;
                while st.announced > 0 && !st.running && st.done <= need {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    st = self
                        .gathered
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                st.gathering -= 1;
                // Another caller may have started the flush meanwhile: look again.
                continue;
            }
            if !st.running {
                st.running = true;
                let id = st.next;
                st.next += 1;
                // Callers still gathering for this flush stop waiting for announcements.
                self.gathered.notify_all();
                drop(st);
                let result = flush();
                st = self.lock();
                st.running = false;
                st.done = id + 1;
                if let Err(e) = result {
                    st.failed.insert(id, e.to_string());
                    while st.failed.len() > FAILED_KEPT {
                        if let Some((id, _)) = st.failed.pop_first() {
                            st.forgotten = Some(id);
                        }
                    }
                }
                self.finished.notify_all();
                self.gathered.notify_all();
                continue;
            }
            st.waiting += 1;
            st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
    }

    /// Whether a flush is running now (eviction of cached state must wait for it).
    pub fn running(&self) -> bool {
        self.lock().running
    }

    /// Flushes started so far.
    pub fn flushes(&self) -> u64 {
        self.lock().next
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting
    }

    #[cfg(test)]
    fn gathering(&self) -> usize {
        self.lock().gathering
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    fn patient() -> GroupCommit {
        GroupCommit {
            gather: Duration::from_secs(30),
            ..GroupCommit::default()
        }
    }

    #[test]
    fn a_flush_waits_for_an_announced_caller_and_serves_it_too() {
        let group = Arc::new(patient());
        let runs = Arc::new(AtomicU64::new(0));
        let flush = {
            let runs = Arc::clone(&runs);
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        group.announce(); // a caller still applying its batch
        let leader = {
            let (group, flush) = (Arc::clone(&group), flush.clone());
            std::thread::spawn(move || group.sync(flush))
        };
        while group.gathering() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 0, "the leader waits");
        group.sync_announced(flush).unwrap();
        leader.join().unwrap().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one flush served both");
    }

    #[test]
    fn a_withdrawn_announcement_holds_no_flush_back() {
        let group = patient();
        group.announce();
        group.withdraw();
        let started = std::time::Instant::now();
        group.sync(|| Ok(())).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(group.flushes(), 1);
    }

    #[test]
    fn callers_that_arrive_during_a_flush_share_the_next_one() {
        let group = Arc::new(GroupCommit::default());
        let runs = Arc::new(AtomicU64::new(0));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let flush = {
            let runs = Arc::clone(&runs);
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
                release_rx.lock().unwrap().recv().unwrap();
                Ok(())
            }
        };
        let first = {
            let (group, flush) = (Arc::clone(&group), flush.clone());
            std::thread::spawn(move || group.sync(flush))
        };
        while runs.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let followers: Vec<_> = (0..5)
            .map(|_| {
                let (group, flush) = (Arc::clone(&group), flush.clone());
                std::thread::spawn(move || group.sync(flush))
            })
            .collect();
        while group.waiting() < 5 {
            std::thread::sleep(Duration::from_millis(1));
        }
        release_tx.send(()).unwrap(); // The first flush ends...
        release_tx.send(()).unwrap(); // ...and one more serves all five followers.
        first.join().unwrap().unwrap();
        for f in followers {
            f.join().unwrap().unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(group.flushes(), 2);
    }

    #[test]
    fn a_caller_whose_failed_flush_was_forgotten_is_not_told_ok() {
        let group = GroupCommit::default();
        let flushes = FAILED_KEPT as u64 + 2;
        for _ in 0..flushes {
            assert!(group.sync(|| Err(Error::Io("disk gone".into()))).is_err());
        }
        let st = group.lock();
        assert!(!st.failed.contains_key(&0), "flush 0's failure was dropped");
        assert!(
            st.outcome(0).is_err(),
            "a late caller of flush 0 gets an error"
        );
        assert!(st.outcome(flushes - 1).is_err());
        drop(st);
        group.sync(|| Ok(())).unwrap();
        assert!(group.lock().outcome(flushes).is_ok());
    }

    #[test]
    fn a_failed_flush_fails_every_caller_it_served_and_the_next_one_retries() {
        let group = GroupCommit::default();
        let err = group.sync(|| Err(Error::Io("disk on fire".into())));
        assert!(matches!(err, Err(Error::Io(m)) if m.contains("disk on fire")));
        assert!(group.sync(|| Ok(())).is_ok());
    }

    #[test]
    fn a_caller_never_counts_on_a_flush_that_started_before_it_arrived() {
        let group = Arc::new(GroupCommit::default());
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let runs = Arc::new(AtomicU64::new(0));
        std::thread::scope(|s| {
            let g = Arc::clone(&group);
            let r = Arc::clone(&runs);
            s.spawn(move || {
                g.sync(|| {
                    r.fetch_add(1, Ordering::SeqCst);
                    entered_tx.send(()).unwrap();
                    release_rx.lock().unwrap().recv().unwrap();
                    Ok(())
                })
            });
            entered_rx.recv().unwrap();
            let g = Arc::clone(&group);
            let r = Arc::clone(&runs);
            let late = s.spawn(move || {
                g.sync(|| {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            });
            while group.waiting() < 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            release_tx.send(()).unwrap();
            late.join().unwrap().unwrap();
        });
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the late caller ran its own flush"
        );
    }
}
