//! Data sources: `sluice_status` (`GET /v1/status`) and `sluice_cluster` (`GET /v1/cluster`).
//! A few fields as attributes; the whole answer as `json` for `jsondecode`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, DataSource, Diagnostics};

use crate::{report, Api};

fn computed(ty: AttributeType, description: &str) -> Attribute {
    crate::attr(ty, description, AttributeConstraint::Computed)
}

fn number(v: &Json) -> Value<i64> {
    v.as_i64().map(Value::Value).unwrap_or(Value::Null)
}

/// `sluice_status`'s attributes.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct StatusState {
    #[serde(default)]
    pub version: Value<String>,
    #[serde(default)]
    pub node: Value<String>,
    #[serde(default)]
    pub node_id: Value<i64>,
    #[serde(default)]
    pub connections: Value<i64>,
    #[serde(default)]
    pub json: Value<String>,
}

pub fn status_from_api(v: &Json) -> StatusState {
    StatusState {
        version: v["version"]
            .as_str()
            .map(|s| Value::Value(s.to_string()))
            .unwrap_or(Value::Null),
        node: v["node"]
            .as_str()
            .map(|s| Value::Value(s.to_string()))
            .unwrap_or(Value::Null),
        node_id: number(&v["cluster"]["node_id"]),
        connections: number(&v["connections"]),
        json: Value::Value(v.to_string()),
    }
}

/// The `sluice_status` data source: the answering node's `GET /v1/status`.
pub struct Status {
    pub api: Api,
}

#[async_trait]
impl DataSource for Status {
    type State<'a> = StatusState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeType::{Number, String};
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown("The answering Sluice node's status."),
                attributes: map! {
                    "version" => computed(String, "The server's version."),
                    "node" => computed(String, "The answering node's host name."),
                    "node_id" => computed(Number, "The answering node's id in the cluster."),
                    "connections" => computed(Number, "Open NFS connections on that node."),
                    "json" => computed(String, "The whole `GET /v1/status` answer, as JSON."),
                },
                ..Default::default()
            },
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        _config: StatusState,
        _meta: ValueEmpty,
    ) -> Option<StatusState> {
        match self.api.call("GET", "/v1/status".into(), None).await {
            Ok(v) => Some(status_from_api(&v)),
            Err(e) => {
                report(diags, "read the status", &e, |_| None);
                None
            }
        }
    }
}

/// `sluice_cluster`'s attributes.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ClusterState {
    #[serde(default)]
    pub node: Value<i64>,
    #[serde(default)]
    pub membership: Value<String>,
    #[serde(default)]
    pub leader: Value<i64>,
    #[serde(default)]
    pub members: Value<Vec<Value<i64>>>,
    #[serde(default)]
    pub json: Value<String>,
}

pub fn cluster_from_api(v: &Json) -> ClusterState {
    ClusterState {
        node: number(&v["node"]),
        membership: v["membership"]
            .as_str()
            .map(|s| Value::Value(s.to_string()))
            .unwrap_or(Value::Null),
        leader: number(&v["log"]["leader"]),
        members: Value::Value(
            v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["node"].as_i64().map(Value::Value))
                .collect(),
        ),
        json: Value::Value(v.to_string()),
    }
}

/// The `sluice_cluster` data source: `GET /v1/cluster`.
pub struct Cluster {
    pub api: Api,
}

#[async_trait]
impl DataSource for Cluster {
    type State<'a> = ClusterState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeType::{List, Number, String};
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown(
                    "The cluster as the answering node sees it (a single node is a cluster of one).",
                ),
                attributes: map! {
                    "node" => computed(Number, "The answering node's id."),
                    "membership" => computed(String,
                        "`etcd` (nodes join and leave), `static` or `single`."),
                    "leader" => computed(Number,
                        "The metadata log's leader, null while there is none."),
                    "members" => computed(List(Number.into()), "The member nodes' ids."),
                    "json" => computed(String, "The whole `GET /v1/cluster` answer, as JSON."),
                },
                ..Default::default()
            },
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        _config: ClusterState,
        _meta: ValueEmpty,
    ) -> Option<ClusterState> {
        match self.api.call("GET", "/v1/cluster".into(), None).await {
            Ok(v) => Some(cluster_from_api(&v)),
            Err(e) => {
                report(diags, "read the cluster", &e, |_| None);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cluster_answer_gives_its_leader_and_members() {
        let v = json!({"node": 2, "membership": "etcd", "registry_error": null,
            "log": {"term": 3, "leader": 1, "last_log_index": 9, "applied": 9},
            "members": [{"node": 1}, {"node": 2}, {"node": 3}]});
        let c = cluster_from_api(&v);
        assert_eq!(c.leader, Value::Value(1));
        assert_eq!(
            c.members,
            Value::Value(vec![Value::Value(1), Value::Value(2), Value::Value(3)])
        );
        let single = cluster_from_api(&json!({"node": 1, "membership": "single", "log": null,
            "members": []}));
        assert_eq!(single.leader, Value::Null);
    }
}
