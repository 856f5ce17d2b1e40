//! Crashes at random moments: a client thread writes UNSTABLE data and COMMITs in a loop while
//! the test SIGKILLs the server after a random delay, wherever it is (inside a WRITE, between
//! the data I/O and the chunk-map flush of a COMMIT, ...). After each restart every byte that a
//! COMMIT acknowledged must read back as committed, or as a value written after that COMMIT;
//! nothing else. The store must also open cleanly every time.
//!
//! Half the writes are block-aligned (the nvme store's async path), half are not (its
//! read-modify-write path). Runs against the nvme store and the local store. 4 rounds each by default; set
//! SLUICE_CRASH_ITERATIONS for more (the long run uses 100 or more; bounded to 1000).
//! Deterministic choice of writes and delays: SLUICE_CRASH_SEED.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nfs_proto::v3::StableHow;
use sluice_tests::{nfsstat, Sluice, XorShift};

const FILES: usize = 2;
const FILE_SPAN: u64 = 3 << 20;
const WRITES_PER_COMMIT: usize = 6;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the server may hold for one file.
#[derive(Clone, Default)]
struct FileModel {
    /// Contents as of the last acknowledged COMMIT.
    committed: Vec<u8>,
    /// Contents with every write sent so far.
    latest: Vec<u8>,
    /// Writes (offset, data) sent since the last acknowledged COMMIT.
    since: Vec<(usize, Vec<u8>)>,
    /// COMMITs acknowledged, over all rounds (the test is void without some).
    commits: u64,
}

impl FileModel {
    /// Called before a WRITE is sent: from now on the server may hold it.
    fn sent(&mut self, offset: usize, data: &[u8]) {
        if self.latest.len() < offset + data.len() {
            self.latest.resize(offset + data.len(), 0);
        }
        self.latest[offset..offset + data.len()].copy_from_slice(data);
        self.since.push((offset, data.to_vec()));
    }

    fn committed(&mut self) {
        self.committed = self.latest.clone();
        self.since.clear();
        self.commits += 1;
    }

    /// Checks what the server holds after a crash, then adopts it as the committed state.
    fn check(&mut self, round: u64, name: &str, got: Vec<u8>) {
        assert!(
            got.len() >= self.committed.len()
                && got.len() <= self.latest.len().max(self.committed.len()),
            "round {round}: {name} has {} bytes; committed {}, latest {}",
            got.len(),
            self.committed.len(),
            self.latest.len()
        );
        for (at, &b) in got.iter().enumerate() {
            let committed = self.committed.get(at).copied().unwrap_or(0);
            if b == committed {
                continue;
            }
            let written: Vec<u8> = self
                .since
                .iter()
                .filter(|(o, d)| *o <= at && at < o + d.len())
                .map(|(o, d)| d[at - o])
                .collect();
            assert!(
                written.contains(&b),
                "round {round}: {name} byte {at} is {b}; committed {committed}, written since {written:?}"
            );
        }
        self.committed = got.clone();
        self.latest = got;
        self.since.clear();
    }
}

fn crash_at_random_moments(config: &str) {
    let rounds = env_u64("SLUICE_CRASH_ITERATIONS", 4).clamp(1, 1000);
    let seed = env_u64("SLUICE_CRASH_SEED", 0xc0ff_ee00);
    let mut rng = XorShift::new(seed);
    let mut s = Sluice::start_config(config);
    let mut models: Vec<FileModel> = vec![FileModel::default(); FILES];
    for round in 0..rounds {
        // Check what survived the previous crash.
        let (mut c, root) = s.mounted("/");
        let mut handles = Vec::new();
        for (i, model) in models.iter_mut().enumerate() {
            let name = format!("file{i}");
            let fh = match c.lookup(&root, &name) {
                Ok(fh) => fh,
                Err(nfsstat::NOENT) if round == 0 => c.create(&root, &name).unwrap(),
                Err(e) => panic!("round {round}: LOOKUP {name}: {e}"),
            };
            model.check(round, &name, c.read_all(&fh).unwrap());
            handles.push(fh);
        }
        drop(c);

        // Write and commit until the server dies under the client.
        let shared = Arc::new(Mutex::new(models));
        let model = Arc::clone(&shared);
        let (nfs, mount) = (s.nfs, s.mount);
        let worker_seed = rng.next_u64();
        let worker = std::thread::spawn(move || {
            let _ = (nfs, mount);
            let mut rng = XorShift::new(worker_seed);
            let Ok(mut c) = sluice_tests::RpcClient::connect(nfs) else {
                return;
            };
            loop {
                for _ in 0..WRITES_PER_COMMIT {
                    let f = rng.below(FILES as u64) as usize;
                    let mut off = rng.below(FILE_SPAN) as usize;
                    let mut len = 1 + rng.below(300 * 1024) as usize;
                    if rng.below(2) == 0 {
                        // Block-aligned, as the kernel client writes: the stores' fast path.
                        off &= !4095;
                        len = len.div_ceil(4096) * 4096;
                    }
                    let mut buf = vec![0u8; len];
                    rng.fill(&mut buf);
                    model.lock().unwrap()[f].sent(off, &buf);
                    // The server dying under the client (a transport error) is what ends the
                    // worker; an NFS error or a malformed reply from a live server is a bug,
                    // and a panic here fails the test through the join below.
                    match c.try_write(&handles[f], off as u64, &buf, StableHow::Unstable) {
                        Ok(Ok(_)) => {}
                        Ok(Err(status)) => panic!("worker: WRITE failed with NFS status {status}"),
                        Err(e) => {
                            eprintln!("worker: the server went away during a WRITE: {e}");
                            return;
                        }
                    }
                }
                for (f, fh) in handles.iter().enumerate() {
                    match c.try_commit(fh) {
                        Ok(Ok(_)) => {}
                        Ok(Err(status)) => panic!("worker: COMMIT failed with NFS status {status}"),
                        Err(e) => {
                            eprintln!("worker: the server went away during a COMMIT: {e}");
                            return;
                        }
                    }
                    model.lock().unwrap()[f].committed();
                }
            }
        });
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        s.kill9();
        if let Err(panic) = worker.join() {
            // Not the expected end (a transport error): the worker found a real problem.
            std::panic::resume_unwind(panic);
        }
        models = Arc::try_unwrap(shared)
            .ok()
            .expect("worker is gone")
            .into_inner()
            .unwrap();
        s.restart();
        assert!(
            !s.log().contains("ERROR"),
            "round {round}: errors at restart:\n{}",
            s.log()
        );
    }
    let (mut c, root) = s.mounted("/");
    for (i, model) in models.iter_mut().enumerate() {
        let name = format!("file{i}");
        let fh = c.lookup(&root, &name).unwrap();
        model.check(rounds, &name, c.read_all(&fh).unwrap());
    }
    let commits: u64 = models.iter().map(|m| m.commits).sum();
    assert!(commits > 0, "no COMMIT was acknowledged in {rounds} rounds");
    eprintln!("{rounds} crashes, {commits} COMMITs acknowledged before them");
}

#[test]
fn kill_9_at_random_moments_never_loses_a_committed_byte_of_the_nvme_store() {
    crash_at_random_moments("store = \"nvme\"\n");
}

#[test]
fn kill_9_at_random_moments_never_loses_a_committed_byte_of_the_local_store() {
    crash_at_random_moments("store = \"local\"\n");
}
