//! The [`Registry`] in etcd (v3 API, etcd 3.4 and later), through the `etcd-client` crate.
//!
//! Keys, under `/sluice/<cluster>/`:
//! * `nodes/<id>` = the node's inter-node address, attached to the node's lease;
//! * `founder` = the id of the node that initialized the log;
//! * `remove/<id>` = a removal asked for and not yet done;
//! * `removed/<id>` = a tombstone: the node is out of the log and may not come back.
//!
//! The lease has a TTL of [`LEASE_TTL`] and is renewed every third of it. When a renewal
//! fails (etcd unreachable, or the lease expired while this node was stopped or cut off),
//! the node keeps trying and registers again under a new lease as soon as etcd answers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::Mutex;

use super::{Registered, Registry};

/// How long a node stays `up` after its last renewal.
pub const LEASE_TTL: i64 = 6;
/// Bound on one etcd request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct EtcdRegistry {
    client: Client,
    prefix: String,
    /// The registration this node holds, renewed by a task (`register`).
    registration: Arc<Mutex<Option<(u64, String)>>>,
}

fn err(what: &str) -> impl Fn(etcd_client::Error) -> String + '_ {
    move |e| format!("etcd: {what}: {e}")
}

impl EtcdRegistry {
    /// Connects to the etcd members at `endpoints` (e.g. `http://10.0.0.5:2379`); the keys of
    /// cluster `cluster` live under `/sluice/<cluster>/`.
    pub async fn connect(endpoints: &[String], cluster: &str) -> Result<EtcdRegistry, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| format!("cannot reach etcd at {}: {e}", endpoints.join(",")))?;
        Ok(EtcdRegistry {
            client,
            prefix: format!("/sluice/{cluster}/"),
            registration: Arc::default(),
        })
    }

    fn node_key(&self, node: u64) -> String {
        format!("{}nodes/{node}", self.prefix)
    }

    fn remove_key(&self, node: u64) -> String {
        format!("{}remove/{node}", self.prefix)
    }

    fn removed_key(&self, node: u64) -> String {
        format!("{}removed/{node}", self.prefix)
    }

    /// One registration: a new lease, and the node's key under it unless another address
    /// holds the key. Returns the lease id.
    async fn register_once(
        client: &Client,
        key: &str,
        tombstone: &str,
        addr: &str,
    ) -> Result<i64, String> {
        let mut c = client.clone();
        let lease = c
            .lease_grant(LEASE_TTL, None)
            .await
            .map_err(err("grant a lease"))?
            .id();
        let put = TxnOp::put(key, addr, Some(PutOptions::new().with_lease(lease)));
        let txn = Txn::new()
            .when([
                Compare::version(key, CompareOp::Equal, 0),
                Compare::version(tombstone, CompareOp::Equal, 0),
            ])
            .and_then([put.clone()])
            .or_else([TxnOp::get(key, None), TxnOp::get(tombstone, None)]);
        let r = c.txn(txn).await.map_err(err("register"))?;
        if r.succeeded() {
            return Ok(lease);
        }
        let removed = r.op_responses().into_iter().any(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .is_some_and(|kv| kv.key() == tombstone.as_bytes()),
            _ => false,
        });
        if removed {
            let _ = c.lease_revoke(lease).await;
            return Err(format!("{key}: this node was removed from the cluster"));
        }
        // Someone holds the key: this node before a restart (same address), or another node
        // given the same id.
        let holder = r
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                etcd_client::TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            })
            .unwrap_or_default();
        if holder != addr {
            let _ = c.lease_revoke(lease).await;
            return Err(format!(
                "{key} is held by {holder:?} under a live lease: two nodes were given one \
                 cluster.node_id (this one is at {addr:?})"
            ));
        }
        c.put(key, addr, Some(PutOptions::new().with_lease(lease)))
            .await
            .map_err(err("register"))?;
        Ok(lease)
    }

    /// Keeps `lease` alive; registers anew when it is lost (never after a removal).
    async fn keep_alive(
        client: Client,
        key: String,
        tombstone: String,
        addr: String,
        mut lease: i64,
    ) {
        let every = Duration::from_secs((LEASE_TTL / 3).max(1) as u64);
        let mut warned = false;
        loop {
            tokio::time::sleep(every).await;
            let mut c = client.clone();
            let renewed = async {
                let (mut keeper, mut answers) = c.lease_keep_alive(lease).await?;
                keeper.keep_alive().await?;
                let ttl = answers.message().await?.map(|a| a.ttl()).unwrap_or(0);
                Ok::<i64, etcd_client::Error>(ttl)
            };
            let renewed = tokio::time::timeout(REQUEST_TIMEOUT, renewed).await;
            match renewed {
                Ok(Ok(ttl)) if ttl > 0 => {
                    if warned {
                        tracing::info!("cluster: etcd lease renewed again");
                        warned = false;
                    }
                    continue;
                }
                Ok(Ok(_)) => {
                    tracing::warn!("cluster: the etcd lease expired; registering again");
                }
                Ok(Err(e)) if !warned => {
                    tracing::warn!("cluster: cannot renew the etcd lease: {e}");
                    warned = true;
                }
                Err(_) if !warned => {
                    tracing::warn!("cluster: etcd did not answer a lease renewal in time");
                    warned = true;
                }
                _ => {}
            }
            let again = Self::register_once(&client, &key, &tombstone, &addr);
            match tokio::time::timeout(REQUEST_TIMEOUT, again).await {
                Ok(Ok(l)) => {
                    lease = l;
                    warned = false;
                    tracing::info!("cluster: registered in etcd again");
                }
                Ok(Err(e)) => tracing::debug!("cluster: register again: {e}"),
                Err(_) => tracing::debug!("cluster: register again: etcd did not answer"),
            }
        }
    }
}

impl Registry for EtcdRegistry {
    async fn register(&self, node: u64, addr: &str) -> Result<(), String> {
        let mut held = self.registration.lock().await;
        if held.is_some() {
            return Err("this node is registered already".into());
        }
        let key = self.node_key(node);
        let tombstone = self.removed_key(node);
        let lease = Self::register_once(&self.client, &key, &tombstone, addr).await?;
        tokio::spawn(Self::keep_alive(
            self.client.clone(),
            key,
            tombstone,
            addr.to_string(),
            lease,
        ));
        *held = Some((node, addr.to_string()));
        Ok(())
    }

    async fn claim_founder(&self, node: u64) -> Result<bool, String> {
        let key = format!("{}founder", self.prefix);
        let id = node.to_string();
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), id.as_str(), None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let r = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(err("claim the founding"))?;
        if r.succeeded() {
            return Ok(true);
        }
        let founder = r.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        Ok(founder.as_deref() == Some(id.as_bytes()))
    }

    async fn alive(&self) -> Result<Vec<Registered>, String> {
        let prefix = format!("{}nodes/", self.prefix);
        let r = self
            .client
            .clone()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(err("list the nodes"))?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some(node) = key
                .strip_prefix(prefix.as_str())
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            let addr = String::from_utf8_lossy(kv.value()).into_owned();
            out.push(Registered { node, addr });
        }
        Ok(out)
    }

    async fn request_removal(&self, node: u64) -> Result<(), String> {
        self.client
            .clone()
            .put(self.remove_key(node), "", None)
            .await
            .map(|_| ())
            .map_err(err("record the removal"))
    }

    async fn removals(&self) -> Result<BTreeSet<u64>, String> {
        let prefix = format!("{}remove/", self.prefix);
        let r = self
            .client
            .clone()
            .get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(err("list the removals"))?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| {
                String::from_utf8_lossy(kv.key())
                    .strip_prefix(prefix.as_str())
                    .and_then(|n| n.parse().ok())
            })
            .collect())
    }

    async fn removal_done(&self, node: u64) -> Result<(), String> {
        let txn = Txn::new().and_then([
            TxnOp::put(self.removed_key(node), "", None),
            TxnOp::delete(self.remove_key(node), None),
            TxnOp::delete(self.node_key(node), None),
        ]);
        self.client
            .clone()
            .txn(txn)
            .await
            .map(|_| ())
            .map_err(err("clear the removal"))
    }

    async fn was_removed(&self, node: u64) -> Result<bool, String> {
        let r = self
            .client
            .clone()
            .get(
                self.removed_key(node),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(err("read the tombstones"))?;
        Ok(r.count() > 0)
    }
}
