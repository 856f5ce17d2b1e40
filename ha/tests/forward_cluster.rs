//! Any node serves any export: three nodes of one cluster in this process, on loopback, each
//! with the store its NFS front ends would use. A file made through one node is seen, with
//! its bytes, through every other; concurrent creates in one directory from all three nodes
//! all land, with distinct inode numbers; when the leader stops, the others elect a new one
//! and keep serving what was committed, and take new files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::engine::{Engine, MetaOp, RequestId};
use backend::local::LocalData;
use backend::{CreateMode, Cred, Error, FileId, NodeKind, SetAttr, Stability, Store};
use bytes::Bytes;
use ha::forward::wire::{Answer, Call};
use ha::forward::{
    for_client_call, on_target, ClientCall, ClusterData, ClusterStore, HeldData, Peers, TargetEpoch,
};
use ha::metalog::rpc::ClusterKey;
use ha::metalog::{Cluster, RaftMeta, Tuning};

const KEY: &[u8] = b"forwarding test cluster key";

type Node = Arc<ClusterStore<Engine<Arc<RaftMeta>, ClusterData<LocalData>>>>;

/// A node whose new files get `copies` copies; also returns its own data store.
async fn open_with(
    dir: &Path,
    node: u64,
    listener: tokio::net::TcpListener,
    members: &BTreeMap<u64, String>,
    copies: u8,
    scrub: Scrub,
) -> (Arc<RaftMeta>, Node, Arc<LocalData>) {
    let cluster = Cluster {
        listener,
        members: members.clone(),
        key: ClusterKey::new(KEY),
    };
    let meta = Arc::new(
        RaftMeta::open_cluster(dir, node, Tuning::default(), cluster)
            .await
            .unwrap(),
    );
    let held = Arc::new(LocalData::open_in(dir).unwrap());
    let peers = Peers::new(Arc::clone(&meta));
    let (m, h, p) = (Arc::clone(&meta), Arc::clone(&held), Arc::clone(&peers));
    let factory = Box::new(move || {
        let data = ClusterData::new(Arc::clone(&h), node, Arc::clone(&m), Arc::clone(&p))
            .copies(copies)
            .scrub(scrub.0, scrub.1);
        let engine = Engine::with_stores(Arc::clone(&m), data)?;
        engine.set_node(node);
        Ok(engine)
    });
    let local = Arc::clone(&held);
    let held: Arc<dyn HeldData> = held;
    let store = ClusterStore::start(Arc::clone(&meta), peers, Some(held), factory)
        .await
        .unwrap();
    (meta, store, local)
}

async fn cluster(dirs: &[tempfile::TempDir]) -> Vec<(Arc<RaftMeta>, Node)> {
    cluster_with_copies(dirs, 1)
        .await
        .into_iter()
        .map(|(meta, store, _)| (meta, store))
        .collect()
}

fn leader(nodes: &[(Arc<RaftMeta>, Node)]) -> Option<usize> {
    nodes.iter().position(|(m, _)| m.leading().is_some())
}

/// Three nodes whose new files get `copies` copies, each with its own data store.
/// The scrub's rate (bytes a second; 0: off) and the least time between passes.
type Scrub = (u64, Duration);
const NO_SCRUB: Scrub = (0, Duration::from_secs(3600));

async fn cluster_with_copies(
    dirs: &[tempfile::TempDir],
    copies: u8,
) -> [(Arc<RaftMeta>, Node, Arc<LocalData>); 3] {
    cluster_with(dirs, copies, NO_SCRUB).await
}

async fn cluster_with(
    dirs: &[tempfile::TempDir],
    copies: u8,
    scrub: Scrub,
) -> [(Arc<RaftMeta>, Node, Arc<LocalData>); 3] {
    let (mut listeners, members) = common::loopback_members(3).await;
    let (a, b, c) = tokio::join!(
        open_with(
            dirs[0].path(),
            1,
            listeners.next().unwrap(),
            &members,
            copies,
            scrub
        ),
        open_with(
            dirs[1].path(),
            2,
            listeners.next().unwrap(),
            &members,
            copies,
            scrub
        ),
        open_with(
            dirs[2].path(),
            3,
            listeners.next().unwrap(),
            &members,
            copies,
            scrub
        ),
    );
    [a, b, c]
}

fn leader_of(nodes: &[(Arc<RaftMeta>, Node, Arc<LocalData>)]) -> usize {
    nodes
        .iter()
        .position(|(m, _, _)| m.leading().is_some())
        .expect("a leader")
}

async fn create(store: &Node, dir: FileId, name: &str) -> backend::Result<FileId> {
    make(store, dir, name, NodeKind::Regular).await
}

async fn make(store: &Node, dir: FileId, name: &str, kind: NodeKind) -> backend::Result<FileId> {
    let (attr, _) = store
        .create(
            &Cred::root(),
            dir,
            name.as_bytes(),
            kind,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await?;
    Ok(attr.id)
}

/// Takes `node` out of the voters through the leader's `meta` (as `sluice cluster remove`
/// does first).
async fn remove_voter(meta: &RaftMeta, node: u64) {
    meta.raft()
        .change_membership(
            openraft::ChangeMembers::RemoveVoters(BTreeSet::from([node])),
            false,
        )
        .await
        .unwrap();
}

/// Makes a follower that has caught up with the log the leader instead of `old`, which stays
/// up as a follower; returns its index.
///
/// A lagging follower is refused every vote. Left to itself the election is a race:
/// followers refuse votes while the old leader's heartbeats renew its lease, and the old
/// leader or the third node may win the next one. So the old leader stops sending heartbeats
/// and neither it nor the third node stands for election until the successor leads.
async fn hand_over(nodes: &[(Arc<RaftMeta>, Node)], old: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = |i: usize| nodes[i].0.raft().metrics().borrow().last_log_index;
    let new = loop {
        let caught_up = [(old + 1) % 3, (old + 2) % 3]
            .into_iter()
            .find(|&i| last(i) >= last(old));
        if let Some(n) = caught_up {
            break n;
        }
        assert!(Instant::now() < deadline, "no follower caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let other = 3 - old - new;
    nodes[old].0.raft().runtime_config().heartbeat(false);
    nodes[old].0.raft().runtime_config().elect(false);
    nodes[other].0.raft().runtime_config().elect(false);
    let mut tried = Instant::now() - Duration::from_secs(2);
    while nodes[new].0.leading().is_none() || nodes[old].0.leading().is_some() {
        assert!(Instant::now() < deadline, "node {new} did not take over");
        if tried.elapsed() >= Duration::from_secs(1) {
            nodes[new].0.raft().trigger().elect().await.unwrap();
            tried = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[old].0.raft().runtime_config().heartbeat(true);
    nodes[old].0.raft().runtime_config().elect(true);
    nodes[other].0.raft().runtime_config().elect(true);
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_made_through_any_node_is_seen_with_its_bytes_through_every_other() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    for (_, s) in &nodes {
        assert_eq!(s.root(), root, "every node names the root alike");
    }
    let l = leader(&nodes).expect("a leader");
    let follower = &nodes[(l + 1) % 3].1;
    let other = &nodes[(l + 2) % 3].1;

    let id = create(follower, root, "through-a-follower").await.unwrap();
    let payload = Bytes::from((0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let written = follower
        .write(&Cred::root(), id, 0, payload.clone(), Stability::FileSync)
        .await
        .unwrap();
    assert_eq!(written.count as usize, payload.len());

    // Seen through the other follower and through the leader, bytes and all.
    for store in [other, &nodes[l].1] {
        let attr = store
            .lookup(&Cred::root(), root, b"through-a-follower")
            .await
            .unwrap();
        assert_eq!(attr.id, id);
        assert_eq!(attr.size, payload.len() as u64);
        let mut back = Vec::new();
        while back.len() < payload.len() {
            let r = store
                .read(&Cred::root(), id, back.len() as u64, 128 * 1024)
                .await
                .unwrap();
            back.extend_from_slice(&r.data);
            if r.eof {
                break;
            }
        }
        assert!(back == payload[..], "the bytes come back identical");
    }
    // A second create of the name through another node sees the first.
    assert_eq!(
        create(other, root, "through-a-follower").await,
        Err(Error::Exists)
    );
    // Listing through a follower shows it.
    let page = other
        .readdir(&Cred::root(), root, 0, 100, true)
        .await
        .unwrap();
    assert!(page
        .entries
        .iter()
        .any(|e| e.name == b"through-a-follower" && e.id == id));
    // The write verifier a follower reports is the leader's.
    assert_eq!(follower.write_verifier(), nodes[l].1.write_verifier());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_from_every_node_all_land_with_distinct_inodes() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let mut tasks = Vec::new();
    for (i, (_, store)) in nodes.iter().enumerate() {
        for t in 0..4 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for f in 0..25 {
                    ids.push(
                        create(&store, root, &format!("n{i}-t{t}-f{f}"))
                            .await
                            .unwrap(),
                    );
                }
                ids
            }));
        }
    }
    let mut inos = BTreeSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(inos.insert(id.ino), "inode {} given twice", id.ino);
        }
    }
    assert_eq!(inos.len(), 300);
    // Every node lists all 300.
    for (_, store) in &nodes {
        let mut names = BTreeSet::new();
        let mut cookie = 0;
        loop {
            let page = store
                .readdir(&Cred::root(), root, cookie, 64, false)
                .await
                .unwrap();
            for e in &page.entries {
                names.insert(e.name.clone());
                cookie = e.cookie;
            }
            if page.eof {
                break;
            }
        }
        assert_eq!(names.len(), 300);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_stops_the_others_keep_serving_and_take_new_files() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let l = leader(&nodes).expect("a leader");
    let survivor = &nodes[(l + 1) % 3].1;
    let mut made = Vec::new();
    for f in 0..20 {
        made.push(
            create(survivor, root, &format!("before-{f}"))
                .await
                .unwrap(),
        );
    }
    nodes[l].0.shutdown().await.unwrap();
    let stopped = Instant::now();

    // Through each survivor: what was committed is there, and new files can be made. The
    // first call waits for the election (bounded by the route wait), never fails.
    for k in 1..3 {
        let store = &nodes[(l + k) % 3].1;
        for (f, id) in made.iter().enumerate() {
            let attr = store
                .lookup(&Cred::root(), root, format!("before-{f}").as_bytes())
                .await
                .unwrap();
            assert_eq!(attr.id, *id);
        }
        create(store, root, &format!("after-{k}")).await.unwrap();
    }
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "serving again took {took:?}"
    );
    let new = leader(&nodes).expect("a new leader");
    assert_ne!(new, l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_reads_and_writes_the_data_an_earlier_leader_holds() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let old = leader(&nodes).expect("a leader");
    let id = create(&nodes[old].1, root, "held-by-the-old-leader")
        .await
        .unwrap();
    let payload = Bytes::from(vec![0x5au8; 200_000]);
    nodes[old]
        .1
        .write(&Cred::root(), id, 0, payload.clone(), Stability::FileSync)
        .await
        .unwrap();

    // Another node takes over; the old leader stays up as a follower and keeps the bytes.
    let new = hand_over(&nodes, old).await;
    let other = 3 - old - new;
    let third = &nodes[other].1;

    // Read through the third node: shipped to the new leader, whose engine reads the bytes
    // from the old leader.
    let r = third.read(&Cred::root(), id, 0, 200_000).await.unwrap();
    assert!(r.data == payload, "the bytes come back from their holder");
    // A write through the new leader lands on the holder, and a COMMIT syncs it there.
    third
        .write(
            &Cred::root(),
            id,
            200_000,
            Bytes::from_static(b"tail"),
            Stability::Unstable,
        )
        .await
        .unwrap();
    third.commit(id, 0, 0).await.unwrap();
    let r = nodes[old]
        .1
        .read(&Cred::root(), id, 199_998, 10)
        .await
        .unwrap();
    assert_eq!(&r.data[..], b"\x5a\x5atail");
    let placement = third.residency(id).await.unwrap().placement.unwrap();
    assert_eq!(placement.nodes, vec![nodes[old].0.node()]);
}

/// Ships `call` as `request` to `addr` the way a node does: again while the leader there is
/// not serving yet (it answers `Unavailable`).
async fn ship(
    peers: &Peers,
    addr: &str,
    call: &Call,
    request: Option<RequestId>,
) -> ([u8; 8], Answer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = peers.call_as(addr, call, request).await.unwrap();
        if answer.1 != Answer::Failed(Error::Unavailable) || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_retried_after_its_answer_was_lost_is_answered_from_the_state_it_left_even_by_a_new_leader(
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let old = leader(&nodes).expect("a leader");
    // The calls a follower would ship, sent by hand so that a "lost answer" can be retried.
    let peers = Peers::new(Arc::clone(&nodes[(old + 1) % 3].0));
    let addr = |i: usize| peers.addr_of(nodes[i].0.node()).unwrap();
    let make = |name: &str| Call::Create {
        cred: Cred::root(),
        dir: root,
        name: name.as_bytes().to_vec(),
        kind: NodeKind::Regular,
        attr: SetAttr::default(),
        mode: CreateMode::Guarded,
    };
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = |seq| Some(RequestId { secs, node: 9, seq });
    let made = |answer: Answer| match answer {
        Answer::Made(attr, _) => attr.id,
        other => panic!("not made: {other:?}"),
    };

    // The first try runs; its retry at the same leader is answered, not run again.
    let first = made(ship(&peers, &addr(old), &make("once"), request(1)).await.1);
    let again = made(ship(&peers, &addr(old), &make("once"), request(1)).await.1);
    assert_eq!(again, first);
    // Another request for the same name is another create: it fails.
    let (_, second) = ship(&peers, &addr(old), &make("once"), request(2)).await;
    assert_eq!(second, Answer::Failed(Error::Exists));
    // A remove, retried, is answered too (not NotFound).
    made(ship(&peers, &addr(old), &make("gone"), request(3)).await.1);
    let remove = Call::Remove {
        cred: Cred::root(),
        dir: root,
        name: b"gone".to_vec(),
    };
    for _ in 0..2 {
        let (_, removed) = ship(&peers, &addr(old), &remove, request(4)).await;
        assert!(matches!(removed, Answer::Wcc(_)), "{removed:?}");
    }

    // The leader changes: the new one finds the request in the log.
    let new = hand_over(&nodes, old).await;
    let after = made(ship(&peers, &addr(new), &make("once"), request(1)).await.1);
    assert_eq!(after, first);
    let (_, removed) = ship(&peers, &addr(new), &remove, request(4)).await;
    assert!(matches!(removed, Answer::Wcc(_)), "{removed:?}");
    let replayed = |i: usize| stat(&nodes[i].1, "calls_replayed");
    assert_eq!(replayed(old), Some(2));
    assert_eq!(replayed(new), Some(2));
    // A request number never used runs as a call of its own.
    let (_, fresh) = ship(&peers, &addr(new), &remove, request(5)).await;
    assert_eq!(fresh, Answer::Failed(Error::NotFound));

    // A create the leader takes from its own client runs as a request too (its leadership
    // may end while it commits): its record is in the log.
    let leader_node = nodes[new].0.node();
    create(&nodes[new].1, root, "through-the-leader")
        .await
        .unwrap();
    let (all, _) = nodes[new].0.state_machine().export("").unwrap();
    assert!(
        all.ops
            .iter()
            .any(|op| matches!(op, MetaOp::NoteRequest(r) if r.node == leader_node)),
        "no request record of node {leader_node}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_s_call_retransmitted_through_another_node_is_answered_from_what_its_first_try_left(
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let client: std::net::SocketAddr = "10.77.0.10:950".parse().unwrap();
    // NFSv3 REMOVE is procedure 12, CREATE 8; the arguments as the client sent them.
    let named = |xid, proc_, args: &[u8]| ClientCall::new(client, xid, proc_, args);
    let remove = |i: usize, xid| {
        let store = Arc::clone(&nodes[i].1);
        for_client_call(named(xid, 12, b"remove victim"), async move {
            store.remove(&Cred::root(), root, b"victim").await
        })
    };
    let create_as = |i: usize, xid| {
        let store = Arc::clone(&nodes[i].1);
        for_client_call(named(xid, 8, b"create made"), async move {
            make(&store, root, "made", NodeKind::Regular).await
        })
    };

    create(&nodes[0].1, root, "victim").await.unwrap();
    remove(0, 77).await.unwrap();
    // The retransmission reaches the target's next owners (whichever leads the log).
    for i in [1, 2, 0] {
        let again = remove(i, 77).await;
        assert!(again.is_ok(), "retransmission through node {i}: {again:?}");
    }
    // Another call of the same remove (another xid) is another remove.
    assert_eq!(remove(1, 78).await.unwrap_err(), Error::NotFound);

    // A guarded create, retransmitted elsewhere, gets the file it made, not EXIST.
    let made = create_as(2, 90).await.unwrap();
    assert_eq!(create_as(1, 90).await.unwrap(), made);
    assert_eq!(create_as(1, 91).await.unwrap_err(), Error::Exists);
    // The same xid and procedure from another client port is another call too.
    let other = ClientCall::new("10.77.0.10:951".parse().unwrap(), 90, 8, b"create made");
    let store = Arc::clone(&nodes[1].1);
    let fresh = for_client_call(other, async move {
        make(&store, root, "made", NodeKind::Regular).await
    });
    assert_eq!(fresh.await.unwrap_err(), Error::Exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_saved_through_a_follower_is_read_alike_through_every_node_and_the_newest_version_wins(
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let l = leader(&nodes).expect("a leader");
    let follower = &nodes[(l + 1) % 3].1;
    let other = &nodes[(l + 2) % 3].1;

    follower
        .put_doc(b"node/2/nsm", 2, b"monitors v2".to_vec())
        .await
        .unwrap();
    // A save that lost the race with a newer one, through another node: skipped.
    other
        .put_doc(b"node/2/nsm", 1, b"monitors v1".to_vec())
        .await
        .unwrap();
    for (_, store) in &nodes {
        assert_eq!(
            store.doc(b"node/2/nsm").await.unwrap(),
            Some((2, b"monitors v2".to_vec()))
        );
        assert_eq!(store.doc(b"node/3/nsm").await.unwrap(), None);
    }
}

/// One of the node's `Store::stats`, `None` if it reports no such stat.
fn stat(node: &Node, name: &str) -> Option<u64> {
    node.stats()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Makes `read-me` in `root` through `store` (the leader), then waits out the lease of every
/// read round so far, so the next read needs a round of its own. Returns the file's id.
async fn read_me_past_the_lease(store: &Node, root: FileId) -> FileId {
    let id = create(store, root, "read-me").await.unwrap();
    tokio::time::sleep(ha::metalog::READ_LEASE + Duration::from_millis(50)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_the_leader_within_a_lease_share_one_heartbeat_round() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let l = leader(&nodes).expect("a leader");
    let store = &nodes[l].1;
    let id = read_me_past_the_lease(store, root).await;
    let before = stat(store, "read_barrier_rounds").unwrap();
    let started = Instant::now();
    for _ in 0..50 {
        let attr = store.lookup(&Cred::root(), root, b"read-me").await.unwrap();
        assert_eq!(attr.id, id);
    }
    let rounds = stat(store, "read_barrier_rounds").unwrap() - before;
    let took = started.elapsed();
    // One round per lease (240 ms) at most; 50 reads each with its own round would be 50.
    let allowed = 1 + (took.as_millis() / 200) as u64;
    assert!(
        rounds >= 1 && rounds <= allowed,
        "{rounds} heartbeat rounds for 50 reads in {took:?} (at most {allowed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_request_ends_the_leader_s_read_lease() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let l = leader(&nodes).expect("a leader");
    let (meta, store) = (&nodes[l].0, &nodes[l].1);
    read_me_past_the_lease(store, root).await;
    store.lookup(&Cred::root(), root, b"read-me").await.unwrap();
    let rounds = stat(store, "read_barrier_rounds").unwrap();
    let shipped = stat(store, "calls_shipped").unwrap();
    let votes = meta.votes_seen();
    // A follower stands for election (skipping its own lease): its request reaches the leader,
    // which may vote for it.
    let f = (l + 1) % 3;
    nodes[f].0.raft().trigger().elect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while meta.votes_seen() == votes {
        assert!(
            Instant::now() < deadline,
            "the vote request never reached the leader"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Within what would have been the lease, the next read is not answered on it: it runs a
    // round of its own, or goes to whoever leads now.
    store.lookup(&Cred::root(), root, b"read-me").await.unwrap();
    assert!(
        stat(store, "read_barrier_rounds").unwrap() > rounds
            || stat(store, "calls_shipped").unwrap() > shipped,
        "a read after a vote request was answered on the old lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_copies_both_holders_have_every_byte_and_the_file_reads_back_through_every_survivor_of_a_holder_s_stop(
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster_with_copies(&dirs, 2).await;
    let root = nodes[0].1.root();
    let l = leader_of(&nodes);

    // Made through one follower, written through the other (both shipped to the leader).
    let id = create(&nodes[(l + 1) % 3].1, root, "checkpoint")
        .await
        .unwrap();
    let payload: Vec<u8> = (0..2_621_440u32).map(|i| (i % 251) as u8).collect();
    for (k, piece) in payload.chunks(512 * 1024).enumerate() {
        nodes[(l + 2) % 3]
            .1
            .write(
                &Cred::root(),
                id,
                (k * 512 * 1024) as u64,
                Bytes::copy_from_slice(piece),
                Stability::Unstable,
            )
            .await
            .unwrap();
    }
    nodes[(l + 2) % 3].1.commit(id, 0, 0).await.unwrap();

    // The leader made it, so it holds the first copy; one other node holds the second.
    // Residency asked through a follower lists both copies, each from its own node.
    let residency = nodes[(l + 1) % 3].1.residency(id).await.unwrap();
    let placement = residency.placement.clone().unwrap();
    assert_eq!(placement.copies, 2);
    assert_eq!(placement.nodes[0], nodes[l].0.node());
    let listed: Vec<u64> = residency.copies.iter().map(|c| c.node).collect();
    assert_eq!(listed, placement.nodes);
    for c in &residency.copies {
        let held = c.found.as_ref().expect("every copy's node answers");
        let bytes: u64 = held.extents.iter().map(|e| e.1).sum();
        assert!(bytes >= payload.len() as u64, "node {}: {held:?}", c.node);
    }
    for node in &nodes {
        let here = node.2.read(id.ino, 0, payload.len()).unwrap();
        assert_eq!(
            placement.nodes.contains(&node.0.node()),
            here[..] == payload[..],
            "node {} holds a copy exactly when the layout names it",
            node.0.node()
        );
    }

    // The first copy's node stops: the file reads back whole through each survivor, MiB by
    // MiB (a new leader without a copy starts each MiB at a different copy, the stopped one
    // included).
    nodes[l].0.shutdown().await.unwrap();
    for k in 1..3 {
        let store = &nodes[(l + k) % 3].1;
        let mut back = Vec::new();
        while back.len() < payload.len() {
            let r = store
                .read(&Cred::root(), id, back.len() as u64, 1 << 20)
                .await
                .unwrap();
            assert!(!r.data.is_empty());
            back.extend_from_slice(&r.data);
        }
        assert!(
            back == payload,
            "the file reads back through node {}",
            (l + k) % 3 + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_lost_with_a_node_that_left_is_made_again_on_the_free_voter_while_the_file_is_written(
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster_with_copies(&dirs, 2).await;
    let root = nodes[0].1.root();
    let l = leader_of(&nodes);
    let writer = &nodes[l].1;
    let id = create(writer, root, "dataset").await.unwrap();
    let mut payload: Vec<u8> = (0..3_500_000u32).map(|i| (i % 241) as u8).collect();
    writer
        .write(
            &Cred::root(),
            id,
            0,
            Bytes::from(payload.clone()),
            Stability::FileSync,
        )
        .await
        .unwrap();
    let before = writer.residency(id).await.unwrap().placement.unwrap();
    let partner = before.nodes[1];
    let free = (1..=3).find(|n| !before.nodes.contains(n)).unwrap();

    // The partner leaves the voters (as `sluice cluster remove` does first). While the copy
    // is rebuilt on the free node, writes go on; each lands in the file as it ends up.
    remove_voter(&nodes[l].0, partner).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut k = 0usize;
    let after = loop {
        let offset = (k * 300_007) % payload.len();
        let piece = vec![(k % 200) as u8 + 1; 4096];
        writer
            .write(
                &Cred::root(),
                id,
                offset as u64,
                Bytes::from(piece.clone()),
                Stability::Unstable,
            )
            .await
            .unwrap();
        let end = (offset + piece.len()).min(payload.len());
        payload[offset..end].copy_from_slice(&piece[..end - offset]);
        k += 1;
        let now = writer.residency(id).await.unwrap().placement.unwrap();
        if !now.nodes.contains(&partner) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the copy was not restored: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(after.copies, 2);
    assert_eq!(after.nodes, vec![before.nodes[0], free]);
    writer.commit(id, 0, 0).await.unwrap();

    // The new copy is whole, with every write made while it was copied; the departed node
    // is read from no more.
    let held = &nodes[(free - 1) as usize].2;
    let copy = held.read(id.ino, 0, payload.len()).unwrap();
    assert!(
        copy[..] == payload[..],
        "the free node's copy has every byte"
    );
    let r = writer.read(&Cred::root(), id, 0, 1 << 20).await.unwrap();
    assert!(r.data[..] == payload[..1 << 20]);
    let stats: BTreeMap<_, _> = writer.stats().into_iter().collect();
    assert!(stats["copies_restored"] >= 1, "{stats:?}");
    assert!(
        stats["copies_restored_bytes"] >= payload.len() as u64,
        "{stats:?}"
    );
    // Between passes the progress reads zero.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: BTreeMap<_, _> = writer.stats().into_iter().collect();
        if stats["rebuild_files_left"] == 0 {
            assert_eq!(stats["rebuild_bytes_left"], 0, "{stats:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the pass never ended: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_call_from_the_writer_of_an_older_term_is_refused() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let l = leader(&nodes).expect("a leader");
    let term = nodes[l].0.leading().expect("leads");
    let peers = Peers::new(Arc::clone(&nodes[l].0));
    let write = || Call::DataWrite {
        ino: 999_999,
        offset: 0,
        data: Bytes::from_static(b"x"),
    };
    let (a, b) = ((l + 1) % 3, (l + 2) % 3);
    let addr = peers.addr_of(nodes[a].0.node()).unwrap();
    // The writer's term is taken; so is a newer one, which the node remembers ...
    for t in [term, term + 1] {
        let (_, answer) = peers.call_in_term(&addr, &write(), t).await.unwrap();
        assert_eq!(answer, Answer::Done, "term {t}");
    }
    // ... and from then on the older one is refused.
    let (_, answer) = peers.call_in_term(&addr, &write(), term).await.unwrap();
    assert_eq!(answer, Answer::Failed(Error::Fenced));
    // A term older than the node's own log is refused without any data call before it.
    let addr = peers.addr_of(nodes[b].0.node()).unwrap();
    let (_, answer) = peers.call_in_term(&addr, &write(), term - 1).await.unwrap();
    assert_eq!(answer, Answer::Failed(Error::Fenced));
    let stats: BTreeMap<_, _> = nodes[a].1.stats().into_iter().collect();
    assert_eq!(stats["data_calls_fenced"], 1, "{stats:?}");
}

async fn mkdir(store: &Node, dir: FileId, name: &str) -> FileId {
    make(store, dir, name, NodeKind::Directory).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_s_replication_factor_set_through_a_follower_decides_the_copies_of_its_files_and_the_rebuild_keeps_it(
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster_with_copies(&dirs, 3).await;
    let root = nodes[0].1.root();
    let l = leader_of(&nodes);
    let follower = &nodes[(l + 1) % 3].1;
    let one = mkdir(follower, root, "scratch").await;
    let two = mkdir(follower, root, "ckpt").await;
    follower.set_replication(one, Some(1)).await.unwrap();
    follower.set_replication(two, Some(2)).await.unwrap();
    assert_eq!(nodes[l].1.replication(two).await, Ok(Some(2)));
    let placed =
        |id: FileId| async move { follower.residency(id).await.unwrap().placement.unwrap() };
    let single = create(follower, one, "a").await.unwrap();
    let double = create(follower, two, "b").await.unwrap();
    let triple = create(follower, root, "c").await.unwrap();
    assert_eq!(placed(single).await.nodes.len(), 1);
    assert_eq!(placed(double).await.nodes.len(), 2);
    assert_eq!(placed(triple).await.nodes.len(), 3);
    for id in [single, double] {
        follower
            .write(
                &Cred::root(),
                id,
                0,
                Bytes::from(vec![7u8; 100_000]),
                Stability::FileSync,
            )
            .await
            .unwrap();
    }

    // The two-copy file's partner leaves: its copy is made again on the free voter, and the
    // one-copy file, visited by the same pass, is not given a second copy (the cluster's
    // default of three would want one on each of the two voters left).
    let before = placed(double).await;
    let partner = before.nodes[1];
    remove_voter(&nodes[l].0, partner).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let writer = &nodes[l].1;
    loop {
        let now = writer.residency(double).await.unwrap().placement.unwrap();
        if !now.nodes.contains(&partner) {
            assert_eq!(now.nodes.len(), 2, "{now:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no rebuild: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = writer.residency(single).await.unwrap().placement.unwrap();
    assert_eq!(kept.nodes.len(), 1, "{kept:?}");
    assert_eq!(writer.replication(single).await, Ok(Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrub_keeps_its_progress_in_the_log_where_every_node_reads_it() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster_with(&dirs, 2, (64 << 20, Duration::from_secs(1))).await;
    let root = nodes[0].1.root();
    let l = leader_of(&nodes);
    let id = create(&nodes[l].1, root, "data").await.unwrap();
    nodes[l]
        .1
        .write(
            &Cred::root(),
            id,
            0,
            Bytes::from(vec![3u8; 300_000]),
            Stability::FileSync,
        )
        .await
        .unwrap();
    // A pass (the local store cannot check, so its copies count as skipped) ends and is
    // saved; a follower reads it from the log.
    let follower = &nodes[(l + 1) % 3].1;
    let deadline = Instant::now() + Duration::from_secs(30);
    let saved = loop {
        let doc = follower.doc(ha::forward::SCRUB_DOC).await.unwrap();
        if let Some(st) = doc.and_then(|(_, b)| ha::forward::ScrubState::decode(&b)) {
            if st.ended > 0 {
                break st;
            }
        }
        assert!(Instant::now() < deadline, "no scrub pass saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        saved.started > 0 && saved.started <= saved.ended,
        "{saved:?}"
    );
    let stats: BTreeMap<_, _> = nodes[l].1.stats().into_iter().collect();
    assert!(stats["scrub_passes"] >= 1, "{stats:?}");
    assert!(stats["scrub_skipped_bytes"] >= 600_000, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_s_copies_go_to_distinct_failure_domains_while_there_are_enough() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster_with_copies(&dirs, 2).await;
    let root = nodes[0].1.root();
    let l = leader_of(&nodes);
    // The leader and the next node share a rack; the third is alone in another. Every
    // file the leader makes then has its second copy on the third node, where rotation
    // alone would put half of them beside the first.
    let (same, other) = ((l + 1) % 3, (l + 2) % 3);
    for (i, rack) in [(l, "rack-a"), (same, "rack-a"), (other, "rack-b")] {
        let key = ha::forward::domain_key(nodes[i].0.node());
        nodes[same]
            .1
            .put_doc(&key, 1, rack.as_bytes().to_vec())
            .await
            .unwrap();
    }
    for k in 0..6 {
        let id = create(&nodes[same].1, root, &format!("f{k}"))
            .await
            .unwrap();
        let layout = nodes[l].1.residency(id).await.unwrap().placement.unwrap();
        assert_eq!(
            layout.nodes,
            vec![nodes[l].0.node(), nodes[other].0.node()],
            "file {k}"
        );
    }
}

/// A tag for floating target "ckpt" at `epoch`.
fn ckpt(epoch: u64) -> TargetEpoch {
    TargetEpoch {
        name: "ckpt".into(),
        epoch,
    }
}

async fn write_as(
    store: &Node,
    t: TargetEpoch,
    file: FileId,
    bytes: &'static [u8],
) -> backend::Result<()> {
    let data = Bytes::from_static(bytes);
    on_target(
        t,
        store.write(&Cred::root(), file, 0, data, Stability::FileSync),
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_new_owner_fenced_a_floating_target_the_earlier_owner_s_calls_are_refused_by_this_writer_and_the_next(
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = cluster(&dirs).await;
    let root = nodes[0].1.root();
    let l = leader(&nodes).expect("a leader");
    // Both owners are followers: their calls are shipped to the leader with their tags.
    let (old, new) = ((l + 1) % 3, (l + 2) % 3);
    let file = on_target(ckpt(5), create(&nodes[old].1, root, "f"))
        .await
        .unwrap();
    write_as(&nodes[old].1, ckpt(5), file, b"old")
        .await
        .unwrap();

    nodes[new].1.fence_at(ckpt(9)).await.unwrap();
    assert_eq!(
        write_as(&nodes[old].1, ckpt(5), file, b"stale").await,
        Err(Error::Fenced)
    );
    assert_eq!(
        on_target(ckpt(5), create(&nodes[old].1, root, "g")).await,
        Err(Error::Fenced)
    );
    // On the leader itself (its calls run on its engine without shipping) alike.
    assert_eq!(
        write_as(&nodes[l].1, ckpt(5), file, b"stale").await,
        Err(Error::Fenced)
    );
    // Reads are not refused; the new owner's calls, untagged calls and another target's run.
    let read = on_target(ckpt(5), nodes[old].1.read(&Cred::root(), file, 0, 16))
        .await
        .unwrap();
    assert_eq!(&read.data[..], b"old");
    write_as(&nodes[new].1, ckpt(9), file, b"new")
        .await
        .unwrap();
    create(&nodes[old].1, root, "untagged").await.unwrap();
    let other = TargetEpoch {
        name: "other".into(),
        epoch: 1,
    };
    on_target(other, create(&nodes[old].1, root, "other"))
        .await
        .unwrap();
    // An owner older than the fence cannot fence the target back; a retry of the fence can.
    assert_eq!(nodes[old].1.fence_at(ckpt(7)).await, Err(Error::Fenced));
    nodes[new].1.fence_at(ckpt(9)).await.unwrap();
    assert_eq!(nodes[l].1.target_calls_fenced(), 3);

    // The floor is in the log: the next leader refuses the earlier owner too.
    let next = hand_over(&nodes, l).await;
    for (_, store) in &nodes {
        assert_eq!(
            write_as(store, ckpt(5), file, b"stale").await,
            Err(Error::Fenced)
        );
    }
    assert_eq!(nodes[next].1.target_calls_fenced(), 3);
    let read = nodes[old].1.read(&Cred::root(), file, 0, 16).await.unwrap();
    assert_eq!(&read.data[..], b"new");
}
