//! Replicated file data through the NFSv3 wire: three `sluice serve` processes on loopback
//! form one cluster (a fixed member table) with `replicas = 3`, so every file has a copy on
//! every node. A node holding a copy that is killed between UNSTABLE writes and their COMMIT
//! changes the write verifier (the client resends), nothing committed is lost, and the file
//! reads back through the survivors of a further kill.

use std::time::{Duration, Instant};

use nfs_proto::v3::StableHow;
use sluice_tests::{free_port, nfsstat, NfsResult, Options, Sluice};

/// The cluster's shared key file (its directory lives as long as the nodes) and the nodes.
fn three_nodes() -> (tempfile::TempDir, Vec<Sluice>) {
    three_nodes_with("")
}

/// [`three_nodes`] with more settings in `[cluster]`.
fn three_nodes_with(cluster: &str) -> (tempfile::TempDir, Vec<Sluice>) {
    three_nodes_each(|_| cluster.to_string())
}

/// [`three_nodes`] with more settings in each node's `[cluster]` (given its id).
fn three_nodes_each(cluster_of: impl Fn(u64) -> String) -> (tempfile::TempDir, Vec<Sluice>) {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("cluster.key");
    std::fs::write(&key, *b"replication-key!").expect("write key");
    let links: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let opts = (1..=3)
        .map(|node| Options {
            config: Some(format!(
                "cluster_key_file = \"{}\"\n\
                 [server]\n\
                 admin_listen = \"127.0.0.1:{}\"\n\
                 metrics_listen = \"127.0.0.1:{}\"\n\
                 [cluster]\n\
                 id = \"replication-test\"\n\
                 node_id = {node}\n\
                 {}\n\
                 [cluster.members]\n\
                 1 = \"127.0.0.1:{}\"\n\
                 2 = \"127.0.0.1:{}\"\n\
                 3 = \"127.0.0.1:{}\"\n",
                key.display(),
                free_port(),
                free_port(),
                // Three copies unless the node's settings say otherwise.
                match cluster_of(node) {
                    c if c.contains("replicas =") => c,
                    c => format!("replicas = 3\n{c}"),
                },
                links[0],
                links[1],
                links[2],
            )),
            ..Options::default()
        })
        .collect();
    (keys, Sluice::start_together(opts))
}

/// The node whose engine writes the metadata now (the last to say so).
fn leader(nodes: &[Sluice]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leading: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].log().contains("this node writes the metadata now"))
            .collect();
        if let [one] = leading[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no single leader: {leading:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Retries while the answer is NFS3ERR_JUKEBOX (an election, a copy's node coming back).
fn patiently<T>(mut f: impl FnMut() -> NfsResult<T>) -> NfsResult<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Err(nfsstat::JUKEBOX) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

const PIECE: usize = 256 * 1024;

/// Flips byte `at` of the 4 KiB `block` in `node`'s device file (where it holds a copy of
/// it); returns the device file's path.
fn flip_a_byte(node: &Sluice, block: &[u8], at: usize) -> std::path::PathBuf {
    let device = node.data_dir().join("nvme/dev0");
    let disk = std::fs::read(&device).expect("read the device file");
    let start = (0..disk.len() / 4096)
        .map(|b| b * 4096)
        .find(|&s| &disk[s..s + 4096] == block)
        .expect("the block is on the node's device");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&device)
        .expect("open the device file");
    std::os::unix::fs::FileExt::write_all_at(
        &file,
        &[disk[start + at] ^ 0xff],
        (start + at) as u64,
    )
    .expect("corrupt one byte");
    device
}

#[test]
fn a_copy_s_node_killed_between_unstable_writes_and_commit_leaves_the_layout_and_nothing_committed_is_lost(
) {
    let (_keys, mut nodes) = three_nodes();
    let l = leader(&nodes);
    let k = (l + 1) % 3;
    let (mut c, root) = nodes[l].mounted("/");
    let fh = patiently(|| c.create(&root, "checkpoint")).expect("create");
    let payload: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    let write_all = |c: &mut sluice_tests::RpcClient| -> [u8; 8] {
        let mut verf = None;
        for (i, piece) in payload.chunks(PIECE).enumerate() {
            let w = patiently(|| c.write(&fh, (i * PIECE) as u64, piece, StableHow::Unstable))
                .expect("unstable write");
            assert_eq!(
                *verf.get_or_insert(w.verf),
                w.verf,
                "one verifier across the writes"
            );
        }
        verf.expect("some writes")
    };
    let first = write_all(&mut c);

    // A copy's node is down: the next write leaves it out of the file's layout and is taken
    // by the two copies left, at once (no JUKEBOX: the client would wait seconds on one).
    nodes[k].kill9();
    let w = c
        .write(&fh, 0, &payload[..PIECE], StableHow::Unstable)
        .expect("a write while a copy's node is down");
    assert_eq!(w.verf, first, "the copies left lost nothing");
    assert!(nodes[l].log().contains("the copy left the file's layout"));

    // It comes back: the rebuild copies the whole file to it again (over its stale copy).
    // Its restart may move the verifier (what it had not synced was on it); a client that
    // sees a new one sends its uncommitted writes again, as here.
    nodes[k].restart();
    let mut committed = patiently(|| c.commit(&fh)).expect("commit");
    if committed != first {
        let again = write_all(&mut c);
        assert_eq!(again, committed);
        committed = patiently(|| c.commit(&fh)).expect("commit");
        assert_eq!(committed, again);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes[l]
        .log()
        .contains("a missing copy was made on another node")
    {
        assert!(
            Instant::now() < deadline,
            "the copy was not made again on the node that came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Every node serves the committed bytes; then the leader dies and the two others still do
    // (one of them from the copy made again).
    for node in &nodes {
        let (mut c, _) = node.mounted("/");
        assert!(patiently(|| c.read_all(&fh)).expect("read") == payload);
    }
    nodes[l].kill9();
    for k in [(l + 1) % 3, (l + 2) % 3] {
        let (mut c, _) = nodes[k].mounted("/");
        let back = patiently(|| c.read_all(&fh)).expect("read");
        assert!(back == payload, "node {} reads the file back", k + 1);
    }
}

#[test]
fn a_bad_block_in_one_copy_is_read_from_another_and_written_again() {
    let (_keys, nodes) = three_nodes();
    let l = leader(&nodes);
    let (mut c, root) = nodes[l].mounted("/");
    let fh = patiently(|| c.create(&root, "dataset")).expect("create");
    let payload: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519).rotate_left(7) >> 11) as u8)
        .collect();
    for (i, piece) in payload.chunks(PIECE).enumerate() {
        patiently(|| c.write(&fh, (i * PIECE) as u64, piece, StableHow::FileSync)).expect("write");
    }

    // Flip a byte of the block at 256 KiB in the leader's own copy (its device file): the
    // leader reads its own copy first.
    let block = &payload[256 << 10..(256 << 10) + 4096];
    flip_a_byte(&nodes[l], block, 100);

    // The read is whole (from another copy), and the bad range is written again.
    let back = patiently(|| c.read_all(&fh)).expect("read");
    assert!(back == payload, "the read returns the right bytes");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes[l].log().contains("repaired a copy from another") {
        assert!(Instant::now() < deadline, "no repair:\n{}", nodes[l].log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let failed = nodes[l].log().matches("checksum mismatch").count();
    assert!(failed >= 1);
    let back = patiently(|| c.read_all(&fh)).expect("read");
    assert!(back == payload);
    assert_eq!(
        nodes[l].log().matches("checksum mismatch").count(),
        failed,
        "the repaired copy reads clean"
    );
}

#[test]
fn the_scrub_finds_a_bad_block_in_a_copy_no_client_reads_and_writes_it_again() {
    let (_keys, nodes) = three_nodes_with("scrub_mib_per_second = 64\nscrub_every_seconds = 1");
    let l = leader(&nodes);
    let (mut c, root) = nodes[l].mounted("/");
    let fh = patiently(|| c.create(&root, "checkpoint")).expect("create");
    let payload: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761).rotate_left(5) >> 9) as u8)
        .collect();
    for (i, piece) in payload.chunks(PIECE).enumerate() {
        patiently(|| c.write(&fh, (i * PIECE) as u64, piece, StableHow::FileSync)).expect("write");
    }

    // Flip a byte in another node's copy: reads start at the leader's own copy, so only the
    // scrub (through a data call to that node, past its cache) can find it.
    let other = (l + 1) % nodes.len();
    let block = &payload[512 << 10..(512 << 10) + 4096];
    let device = flip_a_byte(&nodes[other], block, 7);

    let wait_for = |node: &Sluice, what: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.log().matches(what).count() < count {
            assert!(Instant::now() < deadline, "no {what:?}:\n{}", node.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&nodes[l], "scrub: a copy failed its check", 1);
    wait_for(&nodes[l], "repaired a copy from another", 1);
    assert!(nodes[other].log().contains("checksum mismatch"));
    // The other node's device holds the block whole again (written to fresh blocks).
    let disk = std::fs::read(&device).expect("read the device file");
    assert!(
        disk.chunks(4096).any(|b| b == block),
        "the repaired block is on the other node's device"
    );
    // Two more passes find nothing: the copy was written again, whole.
    let passes = nodes[l].log().matches("scrub pass ended").count();
    wait_for(&nodes[l], "scrub pass ended", passes + 2);
    assert_eq!(
        nodes[l]
            .log()
            .matches("scrub: a copy failed its check")
            .count(),
        1,
        "the repaired copy checks clean"
    );
    let back = patiently(|| c.read_all(&fh)).expect("read");
    assert!(back == payload);
}

#[test]
fn with_failure_domains_a_file_s_two_copies_sit_in_different_racks() {
    // Nodes 1 and 2 share a rack; node 3 is alone in another.
    let rack = |node: u64| if node == 3 { "rack-b" } else { "rack-a" };
    let (_keys, nodes) =
        three_nodes_each(|node| format!("replicas = 2\ndomain = \"{}\"", rack(node)));
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !node.log().contains("failure domain kept in the log") {
            assert!(Instant::now() < deadline, "no domain kept:\n{}", node.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Past the leader's cache of the domains.
    std::thread::sleep(Duration::from_millis(2100));
    let l = leader(&nodes);
    let (mut c, root) = nodes[l].mounted("/");
    for k in 0..4u8 {
        let fh = patiently(|| c.create(&root, &format!("f{k}"))).expect("create");
        let block: Vec<u8> = (0..4096u32)
            .map(|i| (i as u8) ^ k.wrapping_mul(37) ^ 0x5a)
            .collect();
        patiently(|| c.write(&fh, 0, &block, StableHow::FileSync)).expect("write");
        let holders: Vec<u64> = (0..3)
            .filter(|&i| {
                let disk = std::fs::read(nodes[i].data_dir().join("nvme/dev0")).expect("device");
                disk.chunks(4096).any(|b| b == block)
            })
            .map(|i| i as u64 + 1)
            .collect();
        assert_eq!(holders.len(), 2, "file {k}: {holders:?}");
        assert_ne!(
            rack(holders[0]),
            rack(holders[1]),
            "file {k}'s copies share a rack: {holders:?} (leader node {})",
            l + 1
        );
    }
}
