//! Three nodes of one metadata log in this process, on loopback: batches written on the leader
//! reach every state machine; the leader stops, the other two elect a new one and go on; the
//! old leader comes back and catches up. A node without the cluster key is refused.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use backend::engine::{Batch, Inode, MetaOp, MetaStore};
use backend::FileType;
use ha::metalog::rpc::ClusterKey;
use ha::metalog::{Cluster, RaftMeta, Tuning};
use openraft::ServerState;

const KEY: &[u8] = b"three-node test cluster key";

fn inode(kind: FileType) -> Inode {
    backend::testing::inode(kind)
}

async fn open(
    dir: &Path,
    node: u64,
    listener: tokio::net::TcpListener,
    members: &BTreeMap<u64, String>,
) -> RaftMeta {
    let cluster = Cluster {
        listener,
        members: members.clone(),
        key: ClusterKey::new(KEY),
    };
    RaftMeta::open_cluster(dir, node, Tuning::default(), cluster)
        .await
        .unwrap()
}

async fn leader_of(nodes: &[&RaftMeta]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in nodes {
            if n.raft().metrics().borrow().state == ServerState::Leader {
                return n.node();
            }
        }
        assert!(Instant::now() < deadline, "no leader within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes inode `ino` through `leader` and waits for its commit.
async fn write(leader: &RaftMeta, ino: u64) {
    let epoch = leader
        .counter(backend::engine::Counter::WriterEpoch)
        .unwrap()
        .unwrap_or(0);
    let ops = [MetaOp::PutInode(ino, inode(FileType::Regular))];
    leader
        .apply(&Batch {
            epoch,
            preconditions: &[],
            ops: &ops,
        })
        .unwrap();
    leader.commit(false).await.unwrap();
}

async fn until_applied(node: &RaftMeta, ino: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.state_machine().inode(ino).unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "node {} never applied inode {ino}",
            node.node()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_elect_a_new_leader_and_catch_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut listeners, members) = common::loopback_members(3).await;
    let (a, b, c) = tokio::join!(
        open(dirs[0].path(), 1, listeners.next().unwrap(), &members),
        open(dirs[1].path(), 2, listeners.next().unwrap(), &members),
        open(dirs[2].path(), 3, listeners.next().unwrap(), &members),
    );
    let mut nodes = vec![a, b, c];
    let first = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
    let leader = nodes.iter().find(|n| n.node() == first).unwrap();
    for ino in 10..20 {
        write(leader, ino).await;
    }
    for n in &nodes {
        until_applied(n, 19).await;
    }

    // A follower cannot commit on its own (no forwarding yet): its commit fails as
    // Unavailable, which clients retry, and its reads drop the batch again.
    let follower = nodes.iter().find(|n| n.node() != first).unwrap();
    let ops = [MetaOp::PutInode(99, inode(FileType::Regular))];
    let epoch = follower
        .counter(backend::engine::Counter::WriterEpoch)
        .unwrap()
        .unwrap_or(0);
    follower
        .apply(&Batch {
            epoch,
            preconditions: &[],
            ops: &ops,
        })
        .unwrap();
    assert_eq!(
        follower.commit(false).await,
        Err(backend::Error::Unavailable)
    );
    assert_eq!(follower.inode(99).unwrap(), None);

    // The leader stops: the other two elect one of themselves and go on writing.
    let at = nodes.iter().position(|n| n.node() == first).unwrap();
    let old = nodes.remove(at);
    old.shutdown().await.unwrap();
    drop(old);
    let second = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
    assert_ne!(second, first);
    let leader = nodes.iter().find(|n| n.node() == second).unwrap();
    write(leader, 30).await;
    for n in &nodes {
        until_applied(n, 30).await;
    }

    // The old leader restarts on its data and port and catches up from the new leader.
    let port = members[&first].clone();
    let listener = loop {
        match tokio::net::TcpListener::bind(&port).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let back = open(dirs[(first - 1) as usize].path(), first, listener, &members).await;
    until_applied(&back, 30).await;
    assert!(back.state_machine().inode(15).unwrap().is_some());
    for n in nodes.iter().chain([&back]) {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_cluster_key_is_refused() {
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let members = BTreeMap::from([(1, addr.clone())]);
    let node = open(dir.path(), 1, listener, &members).await;
    let mut stranger = ha::metalog::net::TcpNetwork::new(
        ClusterKey::new(b"some other key"),
        ha::metalog::net::Heard::default(),
    );
    let mut peer = stranger
        .new_client(1, &openraft::BasicNode::new(&addr))
        .await;
    let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(99, 7), None);
    let answer = peer
        .vote(vote, RPCOption::new(Duration::from_secs(2)))
        .await;
    assert!(
        answer.is_err(),
        "a vote from a node without the key was answered"
    );
    // The stranger's vote changed nothing: node 1 still leads its term.
    assert_eq!(node.raft().metrics().borrow().state, ServerState::Leader);
    node.shutdown().await.unwrap();
}
