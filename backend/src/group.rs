//! Group commit: callers that need a flush share one.
//!
//! Flushes are numbered as they start and run one at a time. A caller needs the first flush
//! that starts after it arrived (that one covers everything the caller did before calling).
//! If no flush is running, the caller runs it itself; otherwise it waits, and whoever finishes
//! the running flush starts the next one for everybody who queued meanwhile.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};

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
    /// Recent failed flushes and why.
    failed: BTreeMap<u64, String>,
}

#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    finished: Condvar,
}

/// Failed flush results kept for callers that wake late.
const FAILED_KEPT: usize = 64;

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once a flush that started after this call has finished, with its result.
    pub fn sync(&self, flush: impl Fn() -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        let need = st.next;
        loop {
            if st.done > need {
                return match st.failed.get(&need) {
                    Some(msg) => Err(Error::Io(msg.clone())),
                    None => Ok(()),
                };
            }
            if !st.running {
                st.running = true;
                let id = st.next;
                st.next += 1;
                drop(st);
                let result = flush();
                st = self.lock();
                st.running = false;
                st.done = id + 1;
                if let Err(e) = result {
                    st.failed.insert(id, e.to_string());
                    while st.failed.len() > FAILED_KEPT {
                        st.failed.pop_first();
                    }
                }
                self.finished.notify_all();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

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
