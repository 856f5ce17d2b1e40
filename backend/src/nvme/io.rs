//! The engines that move blocks between buffers and devices.
//!
//! * [`Uring`]: one dedicated thread owns an io_uring. Callers hand it batches of requests over
//!   a channel and ring an eventfd that the thread always has a read posted on, so a single
//!   `submit_and_wait` sleeps until either a completion or new work arrives. Everything queued
//!   is submitted in one system call.
//! * [`Threads`]: a pool of threads doing `pread`/`pwrite`, for kernels where io_uring is
//!   missing or blocked (seccomp, `kernel.io_uring_disabled`).
//!
//! Both expose one blocking call, [`IoEngine::run`]: it returns once every request of the batch
//! has completed. That is what makes lending raw buffer pointers to the kernel sound: the
//! buffers outlive the I/O because the caller cannot return before it ends.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};

use iobuf::AlignedBuf;

/// What one request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

/// One read or write of `len` bytes at `offset` of `fd`, into or from `ptr`.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub op: Op,
    pub fd: RawFd,
    pub offset: u64,
    pub ptr: *mut u8,
    pub len: usize,
}

// SAFETY: a Request is a description of I/O; the memory it points to is kept alive and
// untouched by its owner until `IoEngine::run` returns (see the module docs).
unsafe impl Send for Request {}

/// Completion state of one batch, shared by the caller and the engine.
struct Batch {
    state: Mutex<BatchState>,
    done: Condvar,
    /// Woken when the batch completes, for async callers.
    task: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The buffer the requests point into, for async callers: kept alive here until the last
    /// request completes, even if the caller stopped waiting.
    owned: Mutex<Option<AlignedBuf>>,
    /// Run with the buffer and the results once the last request completes, on the thread
    /// that completed it ([`IoEngine::submit_then`]).
    then: Mutex<Option<Then>>,
}

/// What a batch submitted with [`IoEngine::submit_then`] runs when it completes.
pub type Then = Box<dyn FnOnce(AlignedBuf, Vec<io::Result<usize>>) + Send>;

/// One read or write of an async batch: `len` bytes at `offset` of `fd`, to or from bytes
/// `at..at + len` of the batch's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub op: Op,
    pub fd: RawFd,
    pub offset: u64,
    pub at: usize,
    pub len: usize,
}

struct BatchState {
    remaining: usize,
    /// Bytes moved, or the OS error, per request.
    results: Vec<io::Result<usize>>,
}

impl Batch {
    fn new(n: usize) -> Arc<Batch> {
        Arc::new(Batch {
            state: Mutex::new(BatchState {
                remaining: n,
                results: (0..n).map(|_| Ok(0)).collect(),
            }),
            done: Condvar::new(),
            task: Mutex::new(None),
            owned: Mutex::new(None),
            then: Mutex::new(None),
        })
    }

    fn complete(&self, index: usize, result: io::Result<usize>) {
        let mut state = lock(&self.state);
        state.results[index] = result;
        state.remaining -= 1;
        if state.remaining == 0 {
            self.done.notify_all();
            let then = lock(&self.then).take();
            let results = match then {
                Some(_) => std::mem::take(&mut state.results),
                None => Vec::new(),
            };
            drop(state);
            if let Some(task) = lock(&self.task).take() {
                let _ = task.send(()); // The caller may have stopped waiting: fine.
            }
            if let Some(then) = then {
                let buf = lock(&self.owned).take();
                match buf {
                    Some(buf) => then(buf, results),
                    None => unreachable!("a batch with a `then` owns its buffer"),
                }
            }
        }
    }

    fn wait(&self) -> Vec<io::Result<usize>> {
        let mut state = lock(&self.state);
        while state.remaining > 0 {
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        std::mem::take(&mut state.results)
    }
}

/// A request plus where to report it.
struct Job {
    req: Request,
    batch: Arc<Batch>,
    index: usize,
}

/// Which engine runs, and why, for the startup log line.
pub enum IoEngine {
    Uring(Uring),
    Threads(Threads),
}

/// How the store picks its engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// io_uring when the kernel allows it, threads otherwise.
    #[default]
    Auto,
    Uring,
    Threads,
}

impl IoEngine {
    /// Starts the chosen engine. `Auto` falls back to threads, with the reason in the log.
    pub fn start(choice: EngineChoice, depth: u32, threads: usize) -> io::Result<IoEngine> {
        match choice {
            EngineChoice::Threads => {
                tracing::info!(
                    threads,
                    "nvme store: I/O engine is the thread pool (configured)"
                );
                Ok(IoEngine::Threads(Threads::start(threads)?))
            }
            EngineChoice::Uring => {
                let ring = Uring::start(depth)?;
                tracing::info!(depth, "nvme store: I/O engine is io_uring (configured)");
                Ok(IoEngine::Uring(ring))
            }
            EngineChoice::Auto => match Uring::start(depth) {
                Ok(ring) => {
                    tracing::info!(depth, "nvme store: I/O engine is io_uring");
                    Ok(IoEngine::Uring(ring))
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        threads,
                        "nvme store: io_uring is unavailable; I/O engine is the thread pool"
                    );
                    Ok(IoEngine::Threads(Threads::start(threads)?))
                }
            },
        }
    }

    /// Runs `spans` against `buf` without blocking the calling thread; returns the buffer and
    /// each span's result once all have completed. If the returned future is dropped early,
    /// the I/O still completes into `buf`, which is freed afterwards.
    pub async fn run_owned(
        &self,
        spans: &[Span],
        buf: AlignedBuf,
    ) -> (AlignedBuf, Vec<io::Result<usize>>) {
        if let Some(bad) = spans
            .iter()
            .find(|s| s.at.checked_add(s.len).is_none_or(|end| end > buf.len()))
        {
            let msg = format!("span {bad:?} outside a buffer of {} bytes", buf.len());
            return (
                buf,
                spans
                    .iter()
                    .map(|_| Err(io::Error::other(msg.clone())))
                    .collect(),
            );
        }
        if spans.is_empty() {
            return (buf, Vec::new());
        }
        let batch = Batch::new(spans.len());
        let (tx, rx) = tokio::sync::oneshot::channel();
        *lock(&batch.task) = Some(tx);
        // A failed send completes the unsent jobs with an error, so the wait below ends.
        self.send_owned(spans, buf, &batch);
        let _ = rx.await;
        // Every request has completed (or was dropped unrun): the buffer is ours again.
        let results = {
            let mut state = lock(&batch.state);
            if state.remaining > 0 {
                let msg = "the I/O engine stopped";
                (0..spans.len())
                    .map(|_| Err(io::Error::other(msg)))
                    .collect()
            } else {
                std::mem::take(&mut state.results)
            }
        };
        let buf = lock(&batch.owned).take();
        match buf {
            Some(buf) => (buf, results),
            None => unreachable!("the batch holds the buffer until the caller takes it"),
        }
    }

    /// Submits `spans` against `buf` and returns at once; `then` gets the buffer and each
    /// span's result once all have completed, on the engine's thread (keep it short). The
    /// buffer is owned by the batch until then, so the caller cannot touch it during the I/O.
    /// Spans outside the buffer fail at once (and `then` runs on this thread).
    pub fn submit_then(&self, spans: &[Span], buf: AlignedBuf, then: Then) {
        if let Some(bad) = spans
            .iter()
            .find(|s| s.at.checked_add(s.len).is_none_or(|end| end > buf.len()))
        {
            let msg = format!("span {bad:?} outside a buffer of {} bytes", buf.len());
            let results = spans
                .iter()
                .map(|_| Err(io::Error::other(msg.clone())))
                .collect();
            then(buf, results);
            return;
        }
        if spans.is_empty() {
            then(buf, Vec::new());
            return;
        }
        let batch = Batch::new(spans.len());
        *lock(&batch.then) = Some(then);
        // A failed send completes the unsent jobs with an error, so `then` still runs.
        self.send_owned(spans, buf, &batch);
    }

    /// Hands `buf` to `batch` and sends one job per span against it. The caller has checked
    /// that every span lies within `buf` and set the batch's completion (`task` or `then`).
    fn send_owned(&self, spans: &[Span], mut buf: AlignedBuf, batch: &Arc<Batch>) {
        debug_assert!(spans
            .iter()
            .all(|s| s.at.checked_add(s.len).is_some_and(|end| end <= buf.len())));
        let base = buf.as_mut_ptr();
        *lock(&batch.owned) = Some(buf);
        let jobs = spans.iter().enumerate().map(|(index, s)| Job {
            req: Request {
                op: s.op,
                fd: s.fd,
                offset: s.offset,
                // SAFETY: `at + len <= buf.len()` (checked by both callers before this), so the
                // pointer stays in the buffer, which the batch owns until every request has
                // completed; moving the `AlignedBuf` into the batch does not move its memory.
                ptr: unsafe { base.add(s.at) },
                len: s.len,
            },
            batch: Arc::clone(batch),
            index,
        });
        let _ = match self {
            IoEngine::Uring(ring) => ring.send(jobs),
            IoEngine::Threads(pool) => pool.send(jobs),
        };
    }

    pub fn name(&self) -> &'static str {
        match self {
            IoEngine::Uring(_) => "io_uring",
            IoEngine::Threads(_) => "threads",
        }
    }

    /// Runs every request and returns each one's result, in order, once all have completed.
    ///
    /// # Safety
    /// Each request's `ptr` must be valid for `len` bytes (writable for reads) for the whole
    /// call, and nothing else may access that memory meanwhile. Each `fd` must stay open.
    pub unsafe fn run(&self, reqs: &[Request]) -> Vec<io::Result<usize>> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let batch = Batch::new(reqs.len());
        let jobs = reqs.iter().enumerate().map(|(index, &req)| Job {
            req,
            batch: Arc::clone(&batch),
            index,
        });
        let sent = match self {
            IoEngine::Uring(ring) => ring.send(jobs),
            IoEngine::Threads(pool) => pool.send(jobs),
        };
        if let Err(e) = sent {
            // The engine thread is gone. Jobs already queued were dropped unrun by it.
            return reqs
                .iter()
                .map(|_| Err(io::Error::other(e.to_string())))
                .collect();
        }
        batch.wait()
    }
}

/// A dedicated thread owning an io_uring.
pub struct Uring {
    tx: Mutex<Sender<Job>>,
    wake: Arc<OwnedFd>,
    /// The ring thread is (about to be) blocked in the kernel: senders must ring the eventfd.
    /// While it is busy, new jobs are picked up on its next turn without a system call.
    sleeping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// user_data of the eventfd read; requests use their slot index.
const WAKE_TOKEN: u64 = u64::MAX;

impl Uring {
    fn start(depth: u32) -> io::Result<Uring> {
        let depth = depth.clamp(8, 4096);
        let ring = io_uring::IoUring::new(depth)?;
        // Probe with a NOP: setup may succeed where submission is blocked by a filter.
        let mut ring = ring;
        let nop = io_uring::opcode::Nop::new().build().user_data(1);
        // SAFETY: a NOP references no memory.
        unsafe { ring.submission().push(&nop) }
            .map_err(|_| io::Error::other("io_uring submission queue full at start"))?;
        ring.submit_and_wait(1)?;
        let probe = ring.completion().next();
        match probe {
            Some(cqe) if cqe.result() >= 0 => {}
            Some(cqe) => return Err(io::Error::from_raw_os_error(-cqe.result())),
            None => return Err(io::Error::other("io_uring NOP did not complete")),
        }
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd returned a new descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let (tx, rx) = channel();
        let thread_wake = Arc::clone(&wake);
        let sleeping = Arc::new(AtomicBool::new(false));
        let thread_sleeping = Arc::clone(&sleeping);
        let thread = std::thread::Builder::new()
            .name("sluice-uring".into())
            .spawn(move || ring_loop(ring, rx, &thread_wake, &thread_sleeping, depth as usize))?;
        Ok(Uring {
            tx: Mutex::new(tx),
            wake,
            sleeping,
            thread: Some(thread),
        })
    }

    fn send(&self, jobs: impl Iterator<Item = Job>) -> io::Result<()> {
        {
            let tx = lock(&self.tx);
            let mut jobs = jobs;
            while let Some(job) = jobs.next() {
                if let Err(unsent) = tx.send(job) {
                    fail_all(
                        std::iter::once(unsent.0).chain(jobs),
                        "the io_uring thread has stopped",
                    );
                    return Err(io::Error::other("the io_uring thread has stopped"));
                }
            }
        }
        // Pairs with the thread's store-then-recheck (both SeqCst): either it sees our jobs
        // before it sleeps, or we see that it sleeps and wake it.
        if !self.sleeping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let n = unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // Closing the channel and waking the thread makes it drain and exit.
        let (dead_tx, _) = channel();
        *lock(&self.tx) = dead_tx;
        let one: u64 = 1;
        // SAFETY: as in `send`.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ring_loop(
    mut ring: io_uring::IoUring,
    rx: Receiver<Job>,
    wake: &OwnedFd,
    sleeping: &AtomicBool,
    depth: usize,
) {
    use io_uring::{opcode, types};
    let mut slots: Vec<Option<Job>> = (0..depth).map(|_| None).collect();
    let mut free: Vec<usize> = (0..depth).rev().collect();
    let mut backlog: VecDeque<Job> = VecDeque::new();
    // Boxed so it can be leaked if the thread exits with the read still posted.
    let mut wake_buf = Box::new([0u8; 8]);
    let mut wake_armed = false;
    let mut closed = false;
    loop {
        // Take everything queued (bounded by free slots; the rest waits in the backlog).
        if !closed {
            loop {
                match rx.try_recv() {
                    Ok(job) => backlog.push_back(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        let inflight = depth - free.len();
        if closed && backlog.is_empty() && inflight == 0 {
            if wake_armed {
                // The kernel may still write into it until the ring is torn down.
                std::mem::forget(wake_buf);
            }
            return;
        }
        {
            let mut sq = ring.submission();
            while let (Some(_), false) = (backlog.front(), sq.is_full()) {
                let Some(slot) = free.pop() else { break };
                let Some(job) = backlog.pop_front() else {
                    break;
                };
                let r = job.req;
                let len = u32::try_from(r.len).unwrap_or(u32::MAX);
                let entry = match r.op {
                    Op::Read => opcode::Read::new(types::Fd(r.fd), r.ptr, len)
                        .offset(r.offset)
                        .build(),
                    Op::Write => opcode::Write::new(types::Fd(r.fd), r.ptr.cast_const(), len)
                        .offset(r.offset)
                        .build(),
                }
                .user_data(slot as u64);
                // SAFETY: the buffer stays valid until the job completes (IoEngine::run's
                // contract); `sq` is not full, checked above.
                if unsafe { sq.push(&entry) }.is_err() {
                    free.push(slot);
                    backlog.push_front(job);
                    break;
                }
                slots[slot] = Some(job);
            }
            if !wake_armed && !closed && !sq.is_full() {
                let entry = opcode::Read::new(
                    types::Fd(wake.as_raw_fd()),
                    wake_buf.as_mut_ptr(),
                    wake_buf.len() as u32,
                )
                .build()
                .user_data(WAKE_TOKEN);
                // SAFETY: `wake_buf` lives on this thread's stack for the whole loop, and the
                // read is re-armed only after its completion was reaped.
                if unsafe { sq.push(&entry) }.is_ok() {
                    wake_armed = true;
                }
            }
        }
        // About to block: announce it, then look once more for jobs sent before the
        // announcement was visible (their senders did not ring).
        sleeping.store(true, Ordering::SeqCst);
        if !closed {
            if let Ok(job) = rx.try_recv() {
                sleeping.store(false, Ordering::SeqCst);
                backlog.push_back(job);
                continue;
            }
        }
        let waited = ring.submit_and_wait(1);
        sleeping.store(false, Ordering::SeqCst);
        if let Err(e) = waited {
            if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            tracing::error!(error = %e, "io_uring submit failed; failing its requests");
            for (slot, job) in slots.iter_mut().enumerate() {
                if let Some(job) = job.take() {
                    job.batch
                        .complete(job.index, Err(io::Error::other(e.to_string())));
                    free.push(slot);
                }
            }
            for job in backlog.drain(..) {
                job.batch
                    .complete(job.index, Err(io::Error::other(e.to_string())));
            }
            continue;
        }
        for cqe in ring.completion() {
            let token = cqe.user_data();
            if token == WAKE_TOKEN {
                wake_armed = false;
                continue;
            }
            let slot = token as usize;
            let Some(job) = slots.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            free.push(slot);
            let res = cqe.result();
            let result = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res as usize)
            };
            job.batch.complete(job.index, result);
        }
    }
}

/// Threads doing positioned reads and writes.
pub struct Threads {
    tx: Mutex<Option<Sender<Job>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Threads {
    fn start(n: usize) -> io::Result<Threads> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..n.max(1) {
            let rx = Arc::clone(&rx);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("sluice-io-{i}"))
                    .spawn(move || loop {
                        let job = lock(&rx).recv();
                        let Ok(job) = job else { return };
                        let result = positioned_io(&job.req);
                        job.batch.complete(job.index, result);
                    })?,
            );
        }
        Ok(Threads {
            tx: Mutex::new(Some(tx)),
            workers,
        })
    }

    fn send(&self, jobs: impl Iterator<Item = Job>) -> io::Result<()> {
        let tx = lock(&self.tx);
        let Some(tx) = tx.as_ref() else {
            fail_all(jobs, "the I/O threads have stopped");
            return Err(io::Error::other("the I/O threads have stopped"));
        };
        let mut jobs = jobs;
        while let Some(job) = jobs.next() {
            if let Err(unsent) = tx.send(job) {
                fail_all(
                    std::iter::once(unsent.0).chain(jobs),
                    "the I/O threads have stopped",
                );
                return Err(io::Error::other("the I/O threads have stopped"));
            }
        }
        Ok(())
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        lock(&self.tx).take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Completes jobs that never reached an engine, so their callers do not wait forever.
fn fail_all(jobs: impl Iterator<Item = Job>, why: &str) {
    for job in jobs {
        job.batch
            .complete(job.index, Err(io::Error::other(why.to_string())));
    }
}

fn positioned_io(r: &Request) -> io::Result<usize> {
    loop {
        let offset = r.offset as libc::off_t;
        // SAFETY: `ptr` is valid for `len` bytes for the duration of the batch (IoEngine::run's
        // contract) and `fd` is open.
        let n = unsafe {
            match r.op {
                Op::Read => libc::pread(r.fd, r.ptr.cast(), r.len, offset),
                Op::Write => libc::pwrite(r.fd, r.ptr.cast_const().cast(), r.len, offset),
            }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn round_trip(engine: &IoEngine) {
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        let mut out = vec![0u8; 64 << 10];
        for (i, b) in out.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let reqs: Vec<Request> = (0..16)
            .map(|i| Request {
                op: Op::Write,
                fd,
                offset: i * 4096,
                // SAFETY: i < 16, so the offset stays inside `out` (64 KiB).
                ptr: unsafe { out.as_mut_ptr().add(i as usize * 4096) },
                len: 4096,
            })
            .collect();
        // SAFETY: `out` outlives the call and is not touched during it.
        let results = unsafe { engine.run(&reqs) };
        assert!(results.iter().all(|r| matches!(r, Ok(4096))));
        let mut back = vec![0u8; 64 << 10];
        let read = [Request {
            op: Op::Read,
            fd,
            offset: 0,
            ptr: back.as_mut_ptr(),
            len: back.len(),
        }];
        // SAFETY: `back` outlives the call.
        let results = unsafe { engine.run(&read) };
        assert_eq!(results[0].as_ref().unwrap(), &(64 << 10));
        assert_eq!(back, out);
    }

    #[test]
    fn the_thread_engine_writes_and_reads_back_a_batch() {
        round_trip(&IoEngine::start(EngineChoice::Threads, 32, 4).unwrap());
    }

    /// io_uring is the default engine, so its test must run: a machine without io_uring fails
    /// it instead of passing untested. A developer whose kernel lacks io_uring opts out
    /// explicitly with `SLUICE_TEST_ALLOW_NO_IO_URING=1` (never set in CI).
    #[test]
    fn the_uring_engine_writes_and_reads_back_a_batch() {
        match IoEngine::start(EngineChoice::Uring, 32, 4) {
            Ok(engine) => round_trip(&engine),
            Err(e) if std::env::var_os("SLUICE_TEST_ALLOW_NO_IO_URING").is_some() => {
                eprintln!("io_uring unavailable, allowed by SLUICE_TEST_ALLOW_NO_IO_URING: {e}")
            }
            Err(e) => panic!(
                "io_uring is unavailable ({e}), so the default I/O engine is untested here; \
                 set SLUICE_TEST_ALLOW_NO_IO_URING=1 to accept that on this machine"
            ),
        }
    }

    #[test]
    fn an_error_on_one_request_is_reported_for_that_request_only() {
        let engine = IoEngine::start(EngineChoice::Auto, 32, 4).unwrap();
        let file = tempfile::tempfile().unwrap();
        let mut buf = vec![0u8; 4096];
        let reqs = [
            Request {
                op: Op::Write,
                fd: file.as_raw_fd(),
                offset: 0,
                ptr: buf.as_mut_ptr(),
                len: 4096,
            },
            Request {
                op: Op::Write,
                fd: -1,
                offset: 0,
                ptr: buf.as_mut_ptr(),
                len: 4096,
            },
        ];
        // SAFETY: `buf` outlives the call; both requests only read it.
        let results = unsafe { engine.run(&reqs) };
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
