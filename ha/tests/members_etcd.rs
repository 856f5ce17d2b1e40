//! Nodes that join and leave through etcd: a real etcd (Debian's `etcd-server`) on loopback
//! ports, three nodes in this process. The first founds the log; the others register and the
//! leader makes them voters; a removed node is taken out of the log, told so, and cannot
//! register again; a node given an id that another address holds is refused.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ha::members::etcd::EtcdRegistry;
use ha::members::{
    open_registered, ClusterAdmin, Founding, Joining, MemberError, RegisteredMembers, Registry,
};
use ha::metalog::rpc::ClusterKey;
use ha::metalog::RaftMeta;

const KEY: &[u8] = b"membership test cluster key";

/// An etcd member on free loopback ports, killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn etcd() -> Etcd {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let child = Command::new("etcd")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen-client-urls", &endpoint])
        .args(["--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd is not installed: apt-get install etcd-server (tests/run.sh does)");
    let etcd = Etcd {
        child,
        endpoint,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if EtcdRegistry::connect(std::slice::from_ref(&etcd.endpoint), "probe")
            .await
            .is_ok()
        {
            let probe = EtcdRegistry::connect(std::slice::from_ref(&etcd.endpoint), "probe")
                .await
                .unwrap();
            if probe.alive().await.is_ok() {
                return etcd;
            }
        }
        assert!(Instant::now() < deadline, "etcd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Node {
    meta: Arc<RaftMeta>,
    admin: RegisteredMembers<EtcdRegistry>,
    removed: Arc<AtomicBool>,
}

async fn start(
    etcd: &Etcd,
    dir: &Path,
    node: u64,
    listener: tokio::net::TcpListener,
) -> Result<Node, String> {
    let addr = listener.local_addr().unwrap().to_string();
    let registry =
        Arc::new(EtcdRegistry::connect(std::slice::from_ref(&etcd.endpoint), "test").await?);
    let removed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&removed);
    let join = Joining {
        dir,
        node,
        addr,
        tuning: Default::default(),
        listener,
        key: ClusterKey::new(KEY),
    };
    let meta = open_registered(
        join,
        Arc::clone(&registry),
        Box::new(move || flag.store(true, Ordering::SeqCst)),
    )
    .await?;
    let admin = RegisteredMembers {
        meta: Arc::clone(&meta),
        registry,
    };
    Ok(Node {
        meta,
        admin,
        removed,
    })
}

fn voters(meta: &RaftMeta) -> BTreeSet<u64> {
    let m = meta.raft().metrics();
    let m = m.borrow();
    m.membership_config.membership().voter_ids().collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_through_etcd_become_voters_and_a_removed_node_stays_out() {
    let etcd = etcd().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut listeners, _) = common::loopback_members(3).await;

    // The first node founds the cluster and leads it alone.
    let one = start(&etcd, dirs[0].path(), 1, listeners.next().unwrap())
        .await
        .unwrap();
    until("node 1 leads", || one.meta.leading().is_some()).await;
    assert_eq!(voters(&one.meta), BTreeSet::from([1]));

    // Two more register and are made voters by the leader.
    let (two, three) = tokio::join!(
        start(&etcd, dirs[1].path(), 2, listeners.next().unwrap()),
        start(&etcd, dirs[2].path(), 3, listeners.next().unwrap()),
    );
    let (two, three) = (two.unwrap(), three.unwrap());
    until("all three are voters", || {
        voters(&one.meta) == BTreeSet::from([1, 2, 3])
            && voters(&three.meta) == BTreeSet::from([1, 2, 3])
    })
    .await;
    let status = three.admin.status().await;
    assert_eq!(status["membership"], "etcd");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| m["health"] == "up" && m["role"] == "voter"),
        "{status}"
    );

    // A node given an id that another address holds is refused, naming the holder.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spare = tempfile::tempdir().unwrap();
    let e = start(&etcd, spare.path(), 2, other)
        .await
        .err()
        .expect("a second node 2 is refused");
    assert!(e.contains("two nodes were given one"), "{e}");

    // Node 2 is removed through node 3's admin: out of the log, told so, and barred.
    three.admin.remove(2).await.unwrap();
    until("node 2 is out of the log", || {
        voters(&one.meta) == BTreeSet::from([1, 3])
    })
    .await;
    until("node 2 is told", || two.removed.load(Ordering::SeqCst)).await;
    assert!(matches!(
        three.admin.remove(2).await,
        Err(MemberError::Unknown(2))
    ));
    let again = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = start(&etcd, dirs[1].path(), 2, again)
        .await
        .err()
        .expect("a removed node cannot come back");
    assert!(e.contains("was removed from the cluster"), "{e}");

    // The two that are left still commit: a removal of node 3 changes the membership again.
    one.admin.remove(3).await.unwrap();
    until("node 3 is out", || voters(&one.meta) == BTreeSet::from([1])).await;
    until("node 3 is told", || three.removed.load(Ordering::SeqCst)).await;
    // The last voter cannot leave.
    assert!(matches!(
        one.admin.remove(1).await,
        Err(MemberError::LastVoter(1))
    ));
    drop(two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_founder_started_again_on_an_empty_directory_is_refused_instead_of_founding_a_second_log()
{
    let etcd = etcd().await;
    // Node 1 founded the cluster on an earlier start (and its lease has lapsed since).
    let earlier = EtcdRegistry::connect(std::slice::from_ref(&etcd.endpoint), "test")
        .await
        .unwrap();
    assert_eq!(earlier.claim_founder(1).await.unwrap(), Founding::Found);
    earlier.founded(1).await.unwrap();
    assert_eq!(
        earlier.claim_founder(1).await.unwrap(),
        Founding::FoundedEarlier
    );
    assert_eq!(earlier.claim_founder(2).await.unwrap(), Founding::Join);

    let empty = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = start(&etcd, empty.path(), 1, listener)
        .await
        .err()
        .expect("the founder on an empty directory is refused");
    assert!(e.contains("would begin a second log"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_founder_that_stopped_before_recording_the_founding_founds_on_its_next_start() {
    let etcd = etcd().await;
    // Node 1 claimed the founding and stopped before it initialized its log.
    let earlier = EtcdRegistry::connect(std::slice::from_ref(&etcd.endpoint), "test")
        .await
        .unwrap();
    assert_eq!(earlier.claim_founder(1).await.unwrap(), Founding::Found);

    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let one = start(&etcd, dir.path(), 1, listener).await.unwrap();
    until("node 1 leads", || one.meta.leading().is_some()).await;
    assert_eq!(
        earlier.claim_founder(1).await.unwrap(),
        Founding::FoundedEarlier
    );
}
