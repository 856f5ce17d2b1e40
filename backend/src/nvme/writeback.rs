//! UNSTABLE writes acknowledged before their device write completes (decision 0005).
//!
//! A block-aligned UNSTABLE WRITE allocates fresh blocks, registers their data here, queues
//! the device write and replies; the chunk map points at the new blocks at once. Until the
//! write completes, reads take those blocks from here (blocks are never overwritten in place,
//! so a block here is exactly the newest data of its range), and a flush waits for every
//! write registered before it took the maps it saves, so a durable map never names a block
//! whose data is not on the device. The blocks held are bounded: a write that finds no room
//! waits (which paces its client through TCP) and never fails for it.
//!
//! A failed background write counts as a loss ([`WriteBack::failures`]): the store's write
//! verifier moves with it, so clients send their uncommitted writes again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// (device, physical block).
pub type Key = (u16, u64);

const BLOCK: usize = 4096;

/// The blocks whose device write is queued or running.
pub struct WriteBack {
    /// Room left, in blocks.
    room: Arc<Semaphore>,
    capacity_blocks: u32,
    state: Mutex<State>,
    /// Signalled whenever a write completes.
    done: Condvar,
    /// Blocks held now: lets reads skip the lock when nothing is in flight.
    held: AtomicUsize,
    failures: AtomicU64,
    /// Writes acknowledged before their device write, for diagnostics.
    writes: AtomicU64,
}

#[derive(Default)]
struct State {
    next: u64,
    running: BTreeSet<u64>,
    /// Runs of blocks by their first block: one or a few per write, so registering and
    /// ending a 1 MiB write is a few map operations, not 256.
    runs: BTreeMap<Key, Run>,
    /// Completions held back by [`WriteBack::hold`] (tests: a write that stays running).
    held_back: Option<Vec<(Ticket, bool)>>,
}

/// Consecutive blocks of one device, from `first` on: their data (whole blocks) and each
/// block's checksum.
pub struct Run {
    pub first: Key,
    pub data: Bytes,
    pub crcs: Vec<u32>,
}

/// A registered write: hand it to [`WriteBack::end`] when its I/O has completed.
pub struct Ticket {
    seq: u64,
    keys: Vec<Key>,
    blocks: usize,
    _room: OwnedSemaphorePermit,
}

impl WriteBack {
    /// `capacity_blocks` 0 turns write-back off.
    pub fn new(capacity_blocks: u32) -> WriteBack {
        WriteBack {
            room: Arc::new(Semaphore::new(capacity_blocks as usize)),
            capacity_blocks,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            held: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// Whether a write of `blocks` blocks may go this way.
    pub fn accepts(&self, blocks: usize) -> bool {
        blocks > 0 && blocks <= self.capacity_blocks as usize
    }

    /// Waits for room for `blocks` blocks (the caller checked [`WriteBack::accepts`]).
    pub async fn room(&self, blocks: usize) -> OwnedSemaphorePermit {
        let n = u32::try_from(blocks).unwrap_or(u32::MAX);
        match Arc::clone(&self.room).acquire_many_owned(n).await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }

    /// Registers the data of blocks about to be written; reads find them here until
    /// [`WriteBack::end`].
    pub fn begin(&self, room: OwnedSemaphorePermit, runs: Vec<Run>) -> Ticket {
        let mut state = self.lock();
        let seq = state.next;
        state.next += 1;
        state.running.insert(seq);
        let mut keys = Vec::with_capacity(runs.len());
        let mut blocks = 0;
        for run in runs {
            debug_assert_eq!(run.data.len(), run.crcs.len() * BLOCK);
            blocks += run.crcs.len();
            keys.push(run.first);
            state.runs.insert(run.first, run);
        }
        self.held.fetch_add(blocks, Ordering::SeqCst);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ticket {
            seq,
            keys,
            blocks,
            _room: room,
        }
    }

    /// The write of `ticket` completed (`ok`: every byte is on the device).
    pub fn end(&self, ticket: Ticket, ok: bool) {
        let mut state = self.lock();
        if let Some(held) = state.held_back.as_mut() {
            held.push((ticket, ok));
            return;
        }
        if !ok {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        for key in &ticket.keys {
            state.runs.remove(key);
        }
        state.running.remove(&ticket.seq);
        self.held.fetch_sub(ticket.blocks, Ordering::SeqCst);
        drop(state);
        self.done.notify_all();
        // The permit goes with the ticket: room for the next write.
    }

    /// While on, writes that complete stay registered as running (their data served from
    /// memory, flushes waiting for them) until it is turned off: for tests that need a write
    /// acknowledged but not finished.
    pub fn hold(&self, on: bool) {
        let held = {
            let mut state = self.lock();
            if on {
                state.held_back.get_or_insert_with(Vec::new);
                return;
            }
            state.held_back.take().unwrap_or_default()
        };
        for (ticket, ok) in held {
            self.end(ticket, ok);
        }
    }

    /// Marks the completions held back by [`WriteBack::hold`] as failed (tests: a device
    /// that refused a write already acknowledged).
    pub fn fail_held(&self) {
        if let Some(held) = self.lock().held_back.as_mut() {
            for (_, ok) in held.iter_mut() {
                *ok = false;
            }
        }
    }

    /// The data of a block whose write is still running, if it has checksum `crc` (a
    /// lock-free reader's copy of a map may name a block since freed and written again).
    pub fn get(&self, key: Key, crc: u32) -> Option<Bytes> {
        if self.held.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let state = self.lock();
        // Only runs of the same device: one of a lower device sorts before every key here.
        let (first, run) = state.runs.range((key.0, 0)..=key).next_back()?;
        let i = usize::try_from(key.1 - first.1).ok()?;
        if run.crcs.get(i) != Some(&crc) {
            return None;
        }
        Some(run.data.slice(i * BLOCK..(i + 1) * BLOCK))
    }

    /// The last write registered so far (`None`: none ever was).
    pub fn last(&self) -> Option<u64> {
        self.lock().next.checked_sub(1)
    }

    /// Blocks until every write registered up to `seq` has completed. Writes registered later
    /// do not hold it up.
    pub fn wait_through(&self, seq: u64) {
        let mut state = self.lock();
        while state.running.first().is_some_and(|&first| first <= seq) {
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Background writes that failed since the store opened.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Writes acknowledged before their device write, since the store opened.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Blocks whose write is running now.
    pub fn held_blocks(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub fn capacity_blocks(&self) -> u32 {
        self.capacity_blocks
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `n` blocks from `first` on device 0, block i filled with `byte + i`, its
    /// "checksum" `byte + i`.
    fn run(first: u64, n: u8, byte: u8) -> Vec<Run> {
        let data: Vec<u8> = (0..n).flat_map(|i| vec![byte + i; BLOCK]).collect();
        vec![Run {
            first: (0, first),
            data: Bytes::from(data),
            crcs: (0..n).map(|i| u32::from(byte + i)).collect(),
        }]
    }

    #[tokio::test]
    async fn a_block_is_found_until_its_write_ends() {
        let wb = WriteBack::new(16);
        let room = wb.room(2).await;
        let t = wb.begin(room, run(7, 2, 1));
        assert_eq!(wb.get((0, 7), 1).unwrap()[0], 1);
        assert_eq!(wb.get((0, 8), 2).unwrap()[..], [2u8; BLOCK][..]);
        assert!(
            wb.get((0, 8), 9).is_none(),
            "another checksum: another block's data"
        );
        assert!(wb.get((0, 9), 3).is_none(), "past the run");
        assert!(wb.get((0, 6), 1).is_none(), "before the run");
        assert!(wb.get((1, 7), 1).is_none(), "another device");
        assert!(
            wb.get((1, 2), 1).is_none(),
            "a lower block of a higher device"
        );
        assert_eq!(wb.held_blocks(), 2);
        wb.end(t, true);
        assert!(wb.get((0, 8), 2).is_none());
        assert_eq!(wb.held_blocks(), 0);
        assert_eq!(wb.failures(), 0);
    }

    #[tokio::test]
    async fn a_write_waits_for_room_and_gets_it_when_another_ends() {
        let wb = Arc::new(WriteBack::new(4));
        let first = wb.begin(wb.room(3).await, run(1, 1, 1));
        let waiting = {
            let wb = Arc::clone(&wb);
            tokio::spawn(async move { wb.room(2).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "only one block of room was left");
        wb.end(first, true);
        let permit = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room came back")
            .unwrap();
        drop(permit);
    }

    #[tokio::test]
    async fn waiting_through_a_write_ignores_later_ones_and_counts_failures() {
        let wb = Arc::new(WriteBack::new(8));
        let a = wb.begin(wb.room(1).await, run(1, 1, 1));
        let upto = wb.last().unwrap();
        let b = wb.begin(wb.room(1).await, run(2, 1, 2));
        let waiter = {
            let wb = Arc::clone(&wb);
            std::thread::spawn(move || wb.wait_through(upto))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!waiter.is_finished(), "write a is still running");
        wb.end(a, false);
        waiter.join().unwrap(); // b still runs: it was registered later.
        assert_eq!(wb.failures(), 1);
        wb.end(b, true);
        assert!(!wb.accepts(0) && wb.accepts(8) && !wb.accepts(9));
    }
}
