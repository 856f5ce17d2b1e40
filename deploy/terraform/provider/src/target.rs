//! `sluice_mount_target`: a named endpoint (addresses + exports) with a bandwidth tier.
//!
//! The tier changes in place (`PUT /v1/targets/{name}/tier`: connections stay up, the pacer
//! takes the new rate); a new name, address list or export list replaces the target, because
//! the API has no call that changes those.

use async_trait::async_trait;
use nfs_server::qos::{check_target_name, CustomTier, TierConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

use crate::{known, known_list, report, string_list, Api, CallError};

/// A table of rates, as the config file's `tier = { ... }`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Rates {
    #[serde(default)]
    pub read: Value<String>,
    #[serde(default)]
    pub write: Value<String>,
    #[serde(default)]
    pub total: Value<String>,
    #[serde(default)]
    pub iops: Value<i64>,
    #[serde(default)]
    pub burst: Value<String>,
}

/// The resource's attributes.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct TargetState {
    #[serde(default)]
    pub id: Value<String>,
    #[serde(default)]
    pub name: Value<String>,
    #[serde(default)]
    pub listen: Value<Vec<Value<String>>>,
    #[serde(default)]
    pub exports: Value<Vec<Value<String>>>,
    #[serde(default)]
    pub bandwidth_tier: Value<String>,
    #[serde(default, with = "crate::optional_block")]
    pub rates: Value<Rates>,
}

/// Where an API error about `field` belongs.
fn field_path(state: &TargetState) -> impl Fn(&str) -> Option<AttributePath> + '_ {
    move |field| match field {
        "name" | "listen" | "exports" => Some(AttributePath::new(field.to_string())),
        "tier" if matches!(state.rates, Value::Value(_)) => Some(AttributePath::new("rates")),
        "tier" => Some(AttributePath::new("bandwidth_tier")),
        _ => None,
    }
}

/// The tier as the API takes it, once every part of it is known. `Err` names the attribute.
pub fn tier_json(state: &TargetState) -> Result<Option<Json>, (AttributePath, String)> {
    match (&state.bandwidth_tier, &state.rates) {
        (Value::Unknown, _) | (_, Value::Unknown) => Ok(None),
        (Value::Value(_), Value::Value(_)) => Err((
            AttributePath::new("rates"),
            "give either bandwidth_tier (a named tier) or a rates block, not both".into(),
        )),
        (Value::Null, Value::Null) => Err((
            AttributePath::new("bandwidth_tier"),
            "give bandwidth_tier (\"1g\", \"20g\", \"40g\", \"80g\" or \"unlimited\") or a rates \
             block"
                .into(),
        )),
        (Value::Value(name), Value::Null) => {
            TierConfig::Named(name.clone())
                .resolve()
                .map_err(|e| (AttributePath::new("bandwidth_tier"), e))?;
            Ok(Some(Json::String(name.clone())))
        }
        (Value::Null, Value::Value(r)) => {
            let part = |v: &Value<String>| match v {
                Value::Value(s) => Ok(Some(s.clone())),
                Value::Null => Ok(None),
                Value::Unknown => Err(()),
            };
            let iops = match r.iops {
                Value::Value(n) if n < 0 => {
                    return Err((
                        AttributePath::new("rates").attribute("iops"),
                        format!("{n}: iops must be 0 (no limit) or more"),
                    ))
                }
                Value::Value(n) => Ok(Some(n as u64)),
                Value::Null => Ok(None),
                Value::Unknown => Err(()),
            };
            let (Ok(read), Ok(write), Ok(total), Ok(iops), Ok(burst)) = (
                part(&r.read),
                part(&r.write),
                part(&r.total),
                iops,
                part(&r.burst),
            ) else {
                return Ok(None);
            };
            let custom = CustomTier {
                read,
                write,
                total,
                iops,
                burst,
            };
            // Check each rate alone first, so the message names the attribute at fault.
            for (name, v) in [
                ("read", &custom.read),
                ("write", &custom.write),
                ("total", &custom.total),
            ] {
                if let Some(v) = v {
                    nfs_server::qos::parse_rate(v)
                        .map_err(|e| (AttributePath::new("rates").attribute(name), e))?;
                }
            }
            if let Some(b) = &custom.burst {
                nfs_server::qos::parse_size(b)
                    .map_err(|e| (AttributePath::new("rates").attribute("burst"), e))?;
            }
            let config = TierConfig::Custom(custom);
            config
                .resolve()
                .map_err(|e| (AttributePath::new("rates"), e))?;
            Ok(Some(
                serde_json::to_value(&config).expect("a tier serializes"),
            ))
        }
    }
}

/// Checks the attributes that are known, with the server's rules.
pub fn check(state: &TargetState) -> Vec<(AttributePath, String)> {
    let mut problems = Vec::new();
    if let Some(name) = known(&state.name) {
        if let Err(e) = check_target_name(name) {
            problems.push((AttributePath::new("name"), e));
        } else if name == "default" {
            problems.push((
                AttributePath::new("name"),
                "\"default\" is the built-in target of the NFS ports; choose another name".into(),
            ));
        }
    }
    if let Value::Value(items) = &state.listen {
        if items.is_empty() {
            problems.push((
                AttributePath::new("listen"),
                "give at least one address, e.g. [\"10.0.0.5:2049\"]".into(),
            ));
        }
        for (i, a) in items.iter().enumerate() {
            if let Value::Value(a) = a {
                let at = AttributePath::new("listen").index(i as i64);
                match a.parse::<std::net::SocketAddr>() {
                    Err(_) => problems.push((
                        at,
                        format!("{a:?}: expected ADDR:PORT, e.g. 10.0.0.5:2049 or [fd00::5]:2049"),
                    )),
                    // The server writes addresses back in this form; another spelling would
                    // show as a change on every plan.
                    Ok(parsed) if parsed.to_string() != *a => problems.push((
                        at,
                        format!(
                            "{a:?}: write it as the server keeps it, {:?}",
                            parsed.to_string()
                        ),
                    )),
                    Ok(_) => {}
                }
            }
        }
    }
    if let Value::Value(items) = &state.exports {
        for (i, p) in items.iter().enumerate() {
            if let Value::Value(p) = p {
                let norm = nfs_server::export::normalize_path(p);
                if !p.starts_with('/') || *p != norm {
                    problems.push((
                        AttributePath::new("exports").index(i as i64),
                        format!("{p:?}: write an export path as the server does, {norm:?}"),
                    ));
                }
            }
        }
    }
    if let Err(p) = tier_json(state) {
        problems.push(p);
    }
    problems
}

/// The API's target (`GET /v1/targets/{name}`) as Terraform state.
pub fn from_api(v: &Json) -> TargetState {
    let name = v["name"].as_str().unwrap_or_default().to_string();
    let (bandwidth_tier, rates) = match &v["tier"] {
        Json::String(s) => (Value::Value(s.clone()), Value::Null),
        Json::Object(o) => {
            let s = |k: &str| match o.get(k).and_then(Json::as_str) {
                Some(s) => Value::Value(s.to_string()),
                None => Value::Null,
            };
            let rates = Rates {
                read: s("read"),
                write: s("write"),
                total: s("total"),
                iops: match o.get("iops").and_then(Json::as_i64) {
                    Some(n) => Value::Value(n),
                    None => Value::Null,
                },
                burst: s("burst"),
            };
            (Value::Null, Value::Value(rates))
        }
        _ => (Value::Null, Value::Null),
    };
    TargetState {
        id: Value::Value(name.clone()),
        name: Value::Value(name),
        listen: string_list(&v["listen"]),
        exports: string_list(&v["exports"]),
        bandwidth_tier,
        rates,
    }
}

/// The `POST /v1/targets` body for a fully known plan.
pub fn create_body(state: &TargetState) -> Option<Json> {
    Some(json!({
        "name": known(&state.name)?,
        "listen": known_list(&state.listen)?,
        "exports": known_list(&state.exports).unwrap_or_default(),
        "tier": tier_json(state).ok()??,
    }))
}

/// Attributes whose change replaces the target.
pub fn replaced_by(prior: &TargetState, proposed: &TargetState) -> Vec<AttributePath> {
    let mut out = Vec::new();
    if prior.name != proposed.name {
        out.push(AttributePath::new("name"));
    }
    if prior.listen != proposed.listen {
        out.push(AttributePath::new("listen"));
    }
    if prior.exports != proposed.exports {
        out.push(AttributePath::new("exports"));
    }
    out
}

fn target_path(name: &str) -> String {
    format!("/v1/targets/{}", nfs_server::ops::cli::segment_escape(name))
}

/// The `sluice_mount_target` resource.
pub struct MountTarget {
    pub api: Api,
}

impl MountTarget {
    /// Refuses, at plan time, export paths the server does not have and this run does not
    /// create (the server itself would accept them and serve nothing through the target).
    async fn check_exports(&self, diags: &mut Diagnostics, state: &TargetState) {
        let Some(paths) = known_list(&state.exports) else {
            return;
        };
        if self.api.deferred() {
            return;
        }
        if paths.is_empty() {
            return;
        }
        match self.api.missing_exports(&paths).await {
            Ok(missing) => {
                for i in missing {
                    diags.error(
                        "unknown export",
                        format!(
                            "{:?} is not an export of this Sluice: create it (a sluice_export \
                             resource, referred to as sluice_export.NAME.path so that Terraform \
                             creates it first) or fix the path (see `sluice export list`)",
                            paths[i]
                        ),
                        AttributePath::new("exports").index(i as i64),
                    );
                }
            }
            Err(e) => report(diags, "list the exports", &e, |_| None),
        }
    }

    async fn fetch(&self, name: &str) -> Result<Option<TargetState>, CallError> {
        match self.api.call("GET", target_path(name), None).await {
            Ok(v) => Ok(Some(from_api(&v))),
            Err(CallError {
                status: Some(404), ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn string_attr(description: &str, constraint: AttributeConstraint) -> Attribute {
    crate::attr(AttributeType::String, description, constraint)
}

#[async_trait]
impl Resource for MountTarget {
    type State<'a> = TargetState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::*;
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown(
                    "A Sluice mount target: addresses clients mount, the exports reachable \
                     through them, and a bandwidth tier enforced by pacing.",
                ),
                attributes: map! {
                    "id" => string_attr("The target's name.", Computed),
                    "name" => string_attr(
                        "Shown in logs and metrics; 1 to 63 letters, digits, `.`, `_` or `-`. \
                         Changing it replaces the target.", Required),
                    "listen" => Attribute {
                        attr_type: AttributeType::List(AttributeType::String.into()),
                        description: Description::markdown(
                            "Socket addresses clients mount the target at (`ip:port`, \
                             `[ipv6]:port`). Changing them replaces the target."),
                        constraint: Required,
                        ..Default::default()
                    },
                    "exports" => Attribute {
                        attr_type: AttributeType::List(AttributeType::String.into()),
                        description: Description::markdown(
                            "Paths of the exports served through the target; empty or unset: \
                             every export. Changing them replaces the target."),
                        constraint: OptionalComputed,
                        ..Default::default()
                    },
                    "bandwidth_tier" => string_attr(
                        "A named tier: `1g`, `20g`, `40g`, `80g` (Gbit/s in total) or \
                         `unlimited`. Changes in place; connections stay up. Give this or a \
                         `rates` block.", Optional),
                },
                blocks: map! {
                    "rates" => NestedBlock::Optional(Block {
                        description: Description::markdown(
                            "A custom tier: rates like `40MB/s`, `10Gbit/s`, `512KiB/s`; \
                             `burst` a size like `16MiB`. Changes in place."),
                        attributes: map! {
                            "read" => string_attr("Read rate.", Optional),
                            "write" => string_attr("Write rate.", Optional),
                            "total" => string_attr("Read and write together.", Optional),
                            "iops" => Attribute {
                                attr_type: AttributeType::Number,
                                description: Description::plain("Operations per second (0: no limit)."),
                                constraint: Optional,
                                ..Default::default()
                            },
                            "burst" => string_attr("Burst size (default: a tenth of a second at the fastest rate).", Optional),
                        },
                        ..Default::default()
                    }),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: TargetState) -> Option<()> {
        for (path, message) in check(&config) {
            diags.error("invalid mount target", message, path);
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: TargetState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(TargetState, ValueEmpty)> {
        let name = known(&state.id).or(known(&state.name))?.to_string();
        if self.api.deferred() {
            return Some((state, private_state));
        }
        match self.fetch(&name).await {
            Ok(Some(mut now)) => {
                // Unset in the configuration and empty on the server are the same thing.
                if state.exports == Value::Null && now.exports == Value::Value(Vec::new()) {
                    now.exports = Value::Null;
                }
                Some((now, private_state))
            }
            Ok(None) => None,
            Err(e) => {
                report(diags, &format!("read mount target {name:?}"), &e, |_| None);
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: TargetState,
        _config: TargetState,
        _meta: ValueEmpty,
    ) -> Option<(TargetState, ValueEmpty)> {
        let mut state = proposed;
        state.id = state.name.clone();
        if state.exports == Value::Null {
            state.exports = Value::Value(Vec::new());
        }
        self.check_exports(diags, &state).await;
        Some((state, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: TargetState,
        proposed: TargetState,
        config: TargetState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(TargetState, ValueEmpty, Vec<AttributePath>)> {
        let mut state = proposed;
        // From the configuration: `exports` removed means every export again (Terraform
        // would keep the old list of an optional-and-computed attribute).
        state.exports = match config.exports {
            Value::Null => Value::Value(Vec::new()),
            other => other,
        };
        let replace = replaced_by(&prior, &state);
        if prior.exports != state.exports {
            self.check_exports(diags, &state).await;
        }
        state.id = state.name.clone();
        Some((state, private_state, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: TargetState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: TargetState,
        _config: TargetState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(TargetState, ValueEmpty)> {
        let Some(body) = create_body(&planned) else {
            diags.root_error_short("the mount target's attributes are not all known at apply");
            return None;
        };
        match self
            .api
            .call("POST", "/v1/targets".into(), Some(body))
            .await
        {
            Ok(_) => Some((planned, private_state)),
            Err(e) => {
                report(diags, "create the mount target", &e, field_path(&planned));
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        _prior: TargetState,
        planned: TargetState,
        _config: TargetState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(TargetState, ValueEmpty)> {
        let (Some(name), Ok(Some(tier))) = (known(&planned.name), tier_json(&planned)) else {
            diags.root_error_short("the mount target's tier is not known at apply");
            return None;
        };
        let path = format!("{}/tier", target_path(name));
        match self
            .api
            .call("PUT", path, Some(json!({ "tier": tier })))
            .await
        {
            Ok(_) => Some((planned, private_state)),
            Err(e) => {
                report(diags, "change the tier", &e, field_path(&planned));
                None
            }
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: TargetState,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let name = known(&state.id).or(known(&state.name))?.to_string();
        match self.api.call("DELETE", target_path(&name), None).await {
            Ok(_)
            | Err(CallError {
                status: Some(404), ..
            }) => Some(()),
            Err(e) => {
                report(diags, &format!("remove mount target {name:?}"), &e, |_| {
                    None
                });
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(TargetState, ValueEmpty)> {
        match self.fetch(&id).await {
            Ok(Some(state)) => Some((state, Default::default())),
            Ok(None) => {
                diags.root_error_short(format!(
                    "no mount target named {id:?} (see `sluice target list`)"
                ));
                None
            }
            Err(e) => {
                report(diags, &format!("read mount target {id:?}"), &e, |_| None);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value<String> {
        Value::Value(v.to_string())
    }

    fn target(tier: &str) -> TargetState {
        TargetState {
            id: Value::Null,
            name: s("ckpt"),
            listen: Value::Value(vec![s("127.0.0.1:2050")]),
            exports: Value::Null,
            bandwidth_tier: s(tier),
            rates: Value::Null,
        }
    }

    #[test]
    fn a_named_tier_is_checked_with_the_servers_rules() {
        assert!(check(&target("80g")).is_empty());
        let problems = check(&target("3g"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, AttributePath::new("bandwidth_tier"));
        assert!(problems[0].1.contains("unknown tier"), "{problems:?}");
    }

    #[test]
    fn a_bad_rate_is_reported_at_its_own_attribute() {
        let mut t = target("x");
        t.bandwidth_tier = Value::Null;
        t.rates = Value::Value(Rates {
            read: s("40MB/s"),
            write: s("fast"),
            ..Default::default()
        });
        let problems = check(&t);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].0,
            AttributePath::new("rates").attribute("write")
        );
    }

    #[test]
    fn a_tier_must_be_given_once() {
        let mut t = target("1g");
        t.rates = Value::Value(Rates::default());
        assert_eq!(check(&t)[0].0, AttributePath::new("rates"));
        t.rates = Value::Null;
        t.bandwidth_tier = Value::Null;
        assert_eq!(check(&t)[0].0, AttributePath::new("bandwidth_tier"));
    }

    #[test]
    fn unknown_values_are_left_for_apply() {
        let mut t = target("1g");
        t.bandwidth_tier = Value::Unknown;
        t.name = Value::Unknown;
        t.listen = Value::Value(vec![Value::Unknown]);
        assert!(check(&t).is_empty());
        assert_eq!(tier_json(&t), Ok(None));
    }

    #[test]
    fn names_addresses_and_export_paths_follow_the_server() {
        let mut t = target("1g");
        t.name = s("default");
        t.listen = Value::Value(vec![s("127.0.0.1")]);
        t.exports = Value::Value(vec![s("/data/")]);
        let paths: Vec<AttributePath> = check(&t).into_iter().map(|p| p.0).collect();
        assert_eq!(
            paths,
            vec![
                AttributePath::new("name"),
                AttributePath::new("listen").index(0),
                AttributePath::new("exports").index(0),
            ]
        );
    }

    #[test]
    fn the_api_target_round_trips_through_state() {
        let v = json!({
            "name": "ckpt", "listen": ["127.0.0.1:2050"], "exports": ["/ckpt"],
            "tier": {"read": "40MB/s", "iops": 100}, "source": "api", "connections": 3,
            "rate_bytes_per_second": {}
        });
        let st = from_api(&v);
        assert_eq!(st.id, s("ckpt"));
        assert_eq!(st.bandwidth_tier, Value::Null);
        let Value::Value(r) = &st.rates else {
            panic!("no rates")
        };
        assert_eq!(r.read, s("40MB/s"));
        assert_eq!(r.iops, Value::Value(100));
        assert_eq!(r.write, Value::Null);
        let body = create_body(&st).expect("known");
        assert_eq!(body["tier"], json!({"read": "40MB/s", "iops": 100}));
        assert_eq!(body["exports"], json!(["/ckpt"]));
    }

    #[test]
    fn an_address_the_server_would_rewrite_is_refused_at_plan() {
        let mut t = target("1g");
        t.listen = Value::Value(vec![s("[FD00::5]:2049")]);
        let problems = check(&t);
        assert_eq!(problems[0].0, AttributePath::new("listen").index(0));
        assert!(problems[0].1.contains("[fd00::5]:2049"), "{problems:?}");
    }

    #[test]
    fn only_a_tier_change_is_made_in_place() {
        let prior = target("1g");
        let mut next = target("80g");
        assert!(replaced_by(&prior, &next).is_empty());
        next.listen = Value::Value(vec![s("127.0.0.1:2051")]);
        assert_eq!(
            replaced_by(&prior, &next),
            vec![AttributePath::new("listen")]
        );
    }
}
