//! Repeated crashes: each round writes pseudo-random UNSTABLE data to a few files (with the
//! odd truncation in between), COMMITs, kills the server with SIGKILL right after the COMMIT
//! reply, restarts it, and checks that every committed byte of every file is back. 5 rounds by default; set
//! SLUICE_CRASH_ITERATIONS for more (bounded to 1000). Deterministic: SLUICE_CRASH_SEED.

use nfs_proto::v3::{Sattr3, StableHow};
use sluice_tests::{nfsstat, Sluice, XorShift};

const FILES: usize = 3;
const FILE_SPAN: u64 = 256 * 1024;
const WRITES_PER_ROUND: usize = 24;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_committed_byte_survives_repeated_kill_9() {
    let rounds = env_u64("SLUICE_CRASH_ITERATIONS", 5).clamp(1, 1000);
    let seed = env_u64("SLUICE_CRASH_SEED", 0x5eed_c0de);
    let mut rng = XorShift::new(seed);
    let mut s = Sluice::start();
    let mut expect: Vec<Vec<u8>> = vec![Vec::new(); FILES];
    let mut verifiers = Vec::new();

    for round in 0..rounds {
        let (mut c, root) = s.mounted("/");
        // Verify what the previous rounds committed.
        for (i, want) in expect.iter().enumerate() {
            let name = format!("file{i}");
            let fh = match c.lookup(&root, &name) {
                Ok(fh) => fh,
                Err(nfsstat::NOENT) if round == 0 => continue,
                Err(e) => panic!("round {round}: LOOKUP {name}: {e}"),
            };
            let got = c.read_all(&fh).unwrap();
            assert_eq!(
                got.len(),
                want.len(),
                "round {round} (seed {seed:#x}): {name} size"
            );
            if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
                panic!(
                    "round {round} (seed {seed:#x}): {name} byte {at} is {}, committed {}",
                    got[at], want[at]
                );
            }
        }

        // Write, then COMMIT every file.
        let mut handles = Vec::new();
        for i in 0..FILES {
            let name = format!("file{i}");
            let fh = match c.lookup(&root, &name) {
                Ok(fh) => fh,
                Err(nfsstat::NOENT) => c.create(&root, &name).unwrap(),
                Err(e) => panic!("LOOKUP {name}: {e}"),
            };
            handles.push(fh);
        }
        let mut pending = expect.clone();
        let mut verf = None;
        for _ in 0..WRITES_PER_ROUND {
            let f = rng.below(FILES as u64) as usize;
            if rng.below(8) == 0 {
                // Now and then a truncation (synchronous metadata) between UNSTABLE writes.
                let size = rng.below(pending[f].len() as u64 + 1);
                let cut = Sattr3 {
                    size: Some(size),
                    ..Sattr3::default()
                };
                c.setattr(&handles[f], cut).unwrap();
                pending[f].truncate(size as usize);
                continue;
            }
            let off = rng.below(FILE_SPAN) as usize;
            let mut buf = vec![0u8; 1 + rng.below(12 * 1024) as usize];
            rng.fill(&mut buf);
            let w = c
                .write(&handles[f], off as u64, &buf, StableHow::Unstable)
                .unwrap();
            assert_eq!(w.count as usize, buf.len());
            assert_eq!(
                *verf.get_or_insert(w.verf),
                w.verf,
                "verifier changed while up"
            );
            let p = &mut pending[f];
            if p.len() < off + buf.len() {
                p.resize(off + buf.len(), 0);
            }
            p[off..off + buf.len()].copy_from_slice(&buf);
        }
        for fh in &handles {
            let cv = c.commit(fh).unwrap();
            assert_eq!(Some(cv), verf, "COMMIT verifier differs from the WRITEs'");
        }
        // Everything is committed: this is now what must survive.
        expect = pending;
        if let Some(v) = verf {
            assert!(!verifiers.contains(&v), "round {round}: verifier reused");
            verifiers.push(v);
        }
        s.kill9();
        drop(c);
        s.restart();
    }

    // Final check after the last crash.
    let (mut c, root) = s.mounted("/");
    for (i, want) in expect.iter().enumerate() {
        let fh = c.lookup(&root, &format!("file{i}")).unwrap();
        assert!(
            c.read_all(&fh).unwrap() == *want,
            "file{i} after the last crash"
        );
    }
}
