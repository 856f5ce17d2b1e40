//! `sluice_target_placement`: the preferred node of a floating mount target (`PUT
//! /v1/targets/{name}/node`, what `sluice target move` sets). The target itself is defined
//! in the nodes' config files (`[[target]] floating = true`): this resource manages only
//! where it runs. Setting the node is a planned move (the owner hands the target over within
//! a second or so); destroying the resource clears the preference and the target stays where
//! it is. A node that takes the target over from a dead preferred node drops the
//! preference, which the next plan shows as drift.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

use crate::{attr, known, report, Api, CallError};

/// The resource's attributes.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct PlacementState {
    #[serde(default)]
    pub id: Value<String>,
    #[serde(default)]
    pub target: Value<String>,
    #[serde(default)]
    pub node: Value<i64>,
}

/// The API's field names ("node: ...") as attributes.
fn field_path(field: &str) -> Option<AttributePath> {
    match field {
        "node" => Some(AttributePath::new("node")),
        "name" | "target" => Some(AttributePath::new("target")),
        _ => None,
    }
}

/// Checks what is known before the API is asked.
pub fn check(state: &PlacementState) -> Vec<(AttributePath, String)> {
    let mut problems = Vec::new();
    if let Value::Value(n) = state.node {
        if n < 1 {
            problems.push((
                AttributePath::new("node"),
                format!("node: {n}: node ids start at 1"),
            ));
        }
    }
    if matches!(&state.target, Value::Value(t) if t.is_empty()) {
        problems.push((
            AttributePath::new("target"),
            "target: give the name of a floating mount target".into(),
        ));
    }
    problems
}

/// The `sluice_target_placement` resource.
pub struct Placement {
    pub api: Api,
}

impl Placement {
    /// The target's preferred node now: `Ok(None)` when the target is gone.
    async fn fetch(&self, target: &str) -> Result<Option<PlacementState>, CallError> {
        let path = format!(
            "/v1/targets/{}",
            nfs_server::ops::cli::segment_escape(target)
        );
        match self.api.call("GET", path, None).await {
            Ok(v) => Ok(Some(PlacementState {
                id: Value::Value(target.to_string()),
                target: Value::Value(target.to_string()),
                node: match v["preferred_node"].as_i64() {
                    Some(n) => Value::Value(n),
                    None => Value::Null,
                },
            })),
            Err(CallError {
                status: Some(404), ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, target: &str, node: Option<i64>) -> Result<(), CallError> {
        let path = format!(
            "/v1/targets/{}/node",
            nfs_server::ops::cli::segment_escape(target)
        );
        self.api
            .call("PUT", path, Some(json!({ "node": node })))
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Resource for Placement {
    type State<'a> = PlacementState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::*;
        use AttributeType::{Number, String};
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown(
                    "The preferred node of a floating mount target (one defined with \
                     `floating = true` in the nodes' config files; needs etcd). The target \
                     moves there (a planned move: its owner hands it over, clients reconnect \
                     within a second or two) and back there whenever that node is live again. \
                     Destroying this resource clears the preference; the target stays where \
                     it is.",
                ),
                attributes: map! {
                    "id" => attr(String, "The target's name.", Computed),
                    "target" => attr(String,
                        "The floating target's name. Changing it replaces the resource.",
                        Required),
                    "node" => attr(Number,
                        "The node id (`[cluster] node_id`) to run the target on: a live node \
                         whose config names the target as floating, not drained.", Required),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: PlacementState) -> Option<()> {
        for (path, message) in check(&config) {
            diags.error("invalid target placement", message, path);
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: PlacementState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(PlacementState, ValueEmpty)> {
        let target = known(&state.target)?.to_string();
        if self.api.deferred() {
            return Some((state, private_state));
        }
        match self.fetch(&target).await {
            Ok(Some(now)) => Some((now, private_state)),
            Ok(None) => None,
            Err(e) => {
                report(diags, &format!("read target {target}"), &e, |_| None);
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: PlacementState,
        _config: PlacementState,
        _meta: ValueEmpty,
    ) -> Option<(PlacementState, ValueEmpty)> {
        let id = proposed.target.clone();
        Some((PlacementState { id, ..proposed }, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: PlacementState,
        proposed: PlacementState,
        _config: PlacementState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(PlacementState, ValueEmpty, Vec<AttributePath>)> {
        let mut replace = Vec::new();
        if prior.target != proposed.target {
            replace.push(AttributePath::new("target"));
        }
        let id = proposed.target.clone();
        Some((PlacementState { id, ..proposed }, private_state, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: PlacementState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: PlacementState,
        _config: PlacementState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(PlacementState, ValueEmpty)> {
        self.update(
            diags,
            planned.clone(),
            planned.clone(),
            planned,
            private_state,
            Default::default(),
        )
        .await
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        _prior: PlacementState,
        planned: PlacementState,
        _config: PlacementState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(PlacementState, ValueEmpty)> {
        let (Some(target), Value::Value(node)) = (known(&planned.target), planned.node) else {
            diags.root_error_short("the placement's attributes are not all known at apply");
            return None;
        };
        match self.put(target, Some(node)).await {
            Ok(()) => Some((planned, private_state)),
            Err(e) => {
                report(diags, &format!("move target {target}"), &e, field_path);
                None
            }
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: PlacementState,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let target = known(&state.target)?.to_string();
        match self.put(&target, None).await {
            Ok(())
            | Err(CallError {
                status: Some(404), ..
            }) => Some(()),
            Err(e) => {
                report(
                    diags,
                    &format!("clear the preferred node of target {target}"),
                    &e,
                    |_| None,
                );
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(PlacementState, ValueEmpty)> {
        match self.fetch(id.trim()).await {
            Ok(Some(state)) => Some((state, Default::default())),
            Ok(None) => {
                diags.root_error_short(format!(
                    "no mount target named {id:?} (see `sluice target list`)"
                ));
                None
            }
            Err(e) => {
                report(diags, &format!("read target {id}"), &e, |_| None);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_below_1_and_an_empty_target_are_refused_at_plan() {
        let st = PlacementState {
            id: Value::Null,
            target: Value::Value(String::new()),
            node: Value::Value(0),
        };
        let paths: Vec<AttributePath> = check(&st).into_iter().map(|p| p.0).collect();
        assert_eq!(
            paths,
            vec![AttributePath::new("node"), AttributePath::new("target")]
        );
        let ok = PlacementState {
            target: Value::Value("float".into()),
            node: Value::Value(2),
            ..st
        };
        assert!(check(&ok).is_empty());
    }

    #[test]
    fn the_api_s_node_errors_are_underlined_at_node() {
        assert_eq!(field_path("node"), Some(AttributePath::new("node")));
        assert_eq!(field_path("tier"), None);
    }
}
