//! Helpers shared by the multi-node tests.

use std::collections::BTreeMap;

/// Listeners on free loopback ports for nodes 1..=n, and the member table naming them.
pub async fn loopback_members(
    n: u64,
) -> (
    std::vec::IntoIter<tokio::net::TcpListener>,
    BTreeMap<u64, String>,
) {
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, l.local_addr().unwrap().to_string());
        listeners.push(l);
    }
    (listeners.into_iter(), members)
}
