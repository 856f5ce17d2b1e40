//! What the server acknowledged as stable survives `kill -9`: FILE_SYNC writes, committed
//! UNSTABLE writes and the directory tree come back after a restart on the same data dir, old
//! file handles keep working, and the write verifier changes so clients know to resend anything
//! uncommitted. Uses the default (nvme, durable) store.

use nfs_proto::v3::StableHow;
use sluice_tests::{nfsstat, Sluice, XorShift};

#[test]
fn file_sync_write_survives_kill_9_and_the_old_handle_still_works() {
    let mut s = Sluice::start();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "synced.bin").unwrap();
    let mut data = vec![0u8; 100_000];
    XorShift::new(7).fill(&mut data);
    for (i, chunk) in data.chunks(32 * 1024).enumerate() {
        let w = c
            .write(&fh, (i * 32 * 1024) as u64, chunk, StableHow::FileSync)
            .unwrap();
        assert_eq!(w.count as usize, chunk.len());
        assert_eq!(
            w.committed,
            StableHow::FileSync as u32,
            "FILE_SYNC honoured"
        );
    }
    drop(c);
    s.kill9();
    s.restart();

    let mut c = s.client();
    let a = c.getattr(&fh).expect("old handle after restart");
    assert_eq!(a.size, data.len() as u64);
    assert_eq!(c.read_all(&fh).unwrap(), data);
    // And by name from a fresh mount.
    let root2 = c.mnt("/").unwrap();
    assert_eq!(root2, root, "the root handle is stable across restarts");
    assert_eq!(c.lookup(&root2, "synced.bin").unwrap(), fh);
}

#[test]
fn committed_unstable_writes_survive_kill_9() {
    let mut s = Sluice::start();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "unstable.bin").unwrap();
    let mut rng = XorShift::new(42);
    let mut expect = vec![0u8; 0];
    let mut verf = None;
    for _ in 0..40 {
        let off = rng.below(200_000) as usize;
        let mut buf = vec![0u8; 1 + rng.below(16 * 1024) as usize];
        rng.fill(&mut buf);
        let w = c.write(&fh, off as u64, &buf, StableHow::Unstable).unwrap();
        assert_eq!(w.count as usize, buf.len());
        assert_eq!(
            *verf.get_or_insert(w.verf),
            w.verf,
            "verifier stable while up"
        );
        if expect.len() < off + buf.len() {
            expect.resize(off + buf.len(), 0);
        }
        expect[off..off + buf.len()].copy_from_slice(&buf);
    }
    let cv = c.commit(&fh).unwrap();
    assert_eq!(Some(cv), verf, "COMMIT verifier equals the WRITE verifier");
    drop(c);
    s.kill9();
    s.restart();

    let mut c = s.client();
    assert_eq!(c.getattr(&fh).unwrap().size, expect.len() as u64);
    let got = c.read_all(&fh).unwrap();
    assert_eq!(got.len(), expect.len());
    if let Some(i) = got.iter().zip(&expect).position(|(a, b)| a != b) {
        panic!(
            "committed byte {i} lost: got {}, want {}",
            got[i], expect[i]
        );
    }
}

#[test]
fn write_verifier_differs_across_restart() {
    let mut s = Sluice::start();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "v.bin").unwrap();
    let before = c.write(&fh, 0, b"one", StableHow::Unstable).unwrap().verf;
    drop(c);
    s.kill9();
    s.restart();
    let mut c = s.client();
    let after = c.write(&fh, 0, b"two", StableHow::Unstable).unwrap().verf;
    assert_ne!(
        before, after,
        "a restart may lose UNSTABLE data: verifier must change"
    );
    assert_eq!(c.commit(&fh).unwrap(), after);
}

#[test]
fn directory_tree_survives_kill_9() {
    let mut s = Sluice::start();
    let (mut c, root) = s.mounted("/");
    let a = c.mkdir(&root, "a").unwrap();
    let b = c.mkdir(&a, "b").unwrap();
    let f1 = c.create(&a, "f1").unwrap();
    let f2 = c.create(&b, "f2").unwrap();
    c.write(&f2, 0, b"deep", StableHow::FileSync).unwrap();
    c.mkdir(&b, "empty").unwrap();
    drop(c);
    s.kill9();
    s.restart();

    let (mut c, root) = s.mounted("/");
    let a2 = c.lookup(&root, "a").unwrap();
    assert_eq!(a2, a);
    let b2 = c.lookup(&a2, "b").unwrap();
    assert_eq!(b2, b);
    assert_eq!(c.lookup(&a2, "f1").unwrap(), f1);
    assert_eq!(c.lookup(&b2, "f2").unwrap(), f2);
    assert_eq!(c.read_all(&f2).unwrap(), b"deep");
    let mut names: Vec<String> = c
        .list_dir(&b2, 4096)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, [".", "..", "empty", "f2"]);
    assert_eq!(c.getattr(&a2).unwrap().ftype, 2, "a is a directory");
    assert_eq!(c.lookup(&root, "missing"), Err(nfsstat::NOENT));
}

#[test]
fn acknowledged_metadata_changes_survive_kill_9() {
    let mut s = Sluice::start();
    let (mut c, root) = s.mounted("/");
    let d = c.mkdir(&root, "d").unwrap();
    let moved = c.create(&d, "before-rename").unwrap();
    c.rename(&d, "before-rename", &root, "after-rename")
        .unwrap();
    c.create(&d, "doomed").unwrap();
    c.remove(&d, "doomed").unwrap();
    c.mkdir(&d, "sub").unwrap();
    c.rmdir(&d, "sub").unwrap();
    let chmod = c.create(&root, "chmod").unwrap();
    let mode = nfs_proto::v3::Sattr3 {
        mode: Some(0o600),
        ..Default::default()
    };
    c.setattr(&chmod, mode).unwrap();
    drop(c);
    s.kill9();
    s.restart();

    let (mut c, root) = s.mounted("/");
    assert_eq!(c.lookup(&root, "after-rename").unwrap(), moved);
    assert_eq!(c.lookup(&d, "before-rename"), Err(nfsstat::NOENT));
    assert_eq!(c.lookup(&d, "doomed"), Err(nfsstat::NOENT));
    assert_eq!(c.lookup(&d, "sub"), Err(nfsstat::NOENT));
    assert_eq!(c.getattr(&chmod).unwrap().mode & 0o7777, 0o600);
    let names: Vec<String> = c
        .list_dir(&d, 4096)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 2, "only . and .. left in d: {names:?}");
}

#[test]
fn truncated_bytes_do_not_come_back_after_kill_9() {
    let mut s = Sluice::start();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "cut").unwrap();
    c.write(&fh, 0, &[0x55; 100_000], StableHow::FileSync)
        .unwrap();
    let cut = nfs_proto::v3::Sattr3 {
        size: Some(10_000),
        ..Default::default()
    };
    c.setattr(&fh, cut).unwrap();
    // Extend past the cut: the gap must read as zeros.
    c.write(&fh, 50_000, b"tail", StableHow::FileSync).unwrap();
    let check = |c: &mut sluice_tests::RpcClient, when: &str| {
        let got = c.read_all(&fh).unwrap();
        assert_eq!(got.len(), 50_004, "{when}");
        assert!(
            got[..10_000].iter().all(|&b| b == 0x55),
            "{when}: kept part"
        );
        if let Some(i) = got[10_000..50_000].iter().position(|&b| b != 0) {
            panic!(
                "{when}: byte {} of the truncated range came back",
                10_000 + i
            );
        }
        assert_eq!(&got[50_000..], b"tail", "{when}");
    };
    check(&mut c, "before the crash");
    drop(c);
    s.kill9();
    s.restart();
    let mut c = s.client();
    check(&mut c, "after kill -9");
}
