//! `sluice_export`: a directory served over NFS, with its client rules.
//!
//! The replication factor changes in place (`PUT /v1/exports/{id}/replication`; files made
//! from then on take it). The API has no call that changes anything else of an export, so
//! any other change replaces it (its file handles turn stale, as with `sluice export remove`
//! then `add`). The id written into file handles is known at plan time: the one given, else
//! the server's hash of the path.

use async_trait::async_trait;
use nfs_server::export::{normalize_path, ClientMatch, ExportConfig};
use nfs_server::ops::admin::{export_config, ApiExport};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{
    AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, Resource};

use crate::{attr, known, report, Api, CallError};

/// Defaults the server fills in for a rule (docs/openapi.json, ExportRuleInput).
const DEFAULT_ACCESS: &str = "rw";
const DEFAULT_SQUASH: &str = "root";
const NOBODY: i64 = 65534;

/// One `client { ... }` block.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Rule {
    #[serde(default, rename = "match")]
    pub matcher: Value<String>,
    #[serde(default)]
    pub access: Value<String>,
    #[serde(default)]
    pub squash: Value<String>,
    #[serde(default)]
    pub anonuid: Value<i64>,
    #[serde(default)]
    pub anongid: Value<i64>,
}

/// The resource's attributes.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ExportState {
    #[serde(default)]
    pub id: Value<String>,
    #[serde(default)]
    pub path: Value<String>,
    #[serde(default)]
    pub export_id: Value<i64>,
    #[serde(default)]
    pub client: Value<Vec<Rule>>,
    #[serde(default)]
    pub replication: Value<i64>,
}

/// `clients[2].match` (the API's and `export_config`'s field names) as a Terraform path.
pub fn field_path(field: &str) -> Option<AttributePath> {
    if field == "replication" {
        return Some(AttributePath::new("replication"));
    }
    if field == "path" || field == "id" {
        let name = if field == "id" { "export_id" } else { "path" };
        return Some(AttributePath::new(name));
    }
    let rest = field.strip_prefix("clients")?;
    if rest.is_empty() {
        return Some(AttributePath::new("client"));
    }
    let (index, attr) = rest.strip_prefix('[')?.split_once(']')?;
    let index: i64 = index.parse().ok()?;
    let path = AttributePath::new("client").index(index);
    Some(match attr.strip_prefix('.') {
        Some(a) => path.attribute(a.to_string()),
        None => path,
    })
}

/// How the server writes a client match back (`*`, `net/prefix`), or None for a host name,
/// which is kept as written (and resolved by the server, never here). Err: not a match.
pub fn canonical_match(m: &str) -> Result<Option<String>, String> {
    if m == "*" || m.contains('/') || m.parse::<std::net::IpAddr>().is_ok() {
        return match ClientMatch::parse(m)? {
            ClientMatch::Any => Ok(Some("*".into())),
            ClientMatch::Cidr { net, prefix } => Ok(Some(format!("{net}/{prefix}"))),
            ClientMatch::Host { name, .. } => Ok(Some(name)),
        };
    }
    let host_like = !m.is_empty()
        && m.len() <= 253
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if host_like {
        Ok(None)
    } else {
        Err("expected *, a CIDR (10.0.0.0/8), an address or a host name".into())
    }
}

/// The `POST /v1/exports` body, once every value is known.
pub fn create_body(state: &ExportState) -> Option<Json> {
    let Value::Value(rules) = &state.client else {
        return None;
    };
    let mut clients = Vec::new();
    for r in rules {
        let mut rule = json!({ "match": known(&r.matcher)? });
        for (k, v) in [("access", &r.access), ("squash", &r.squash)] {
            match v {
                Value::Value(s) => rule[k] = json!(s),
                Value::Null => {}
                Value::Unknown => return None,
            }
        }
        for (k, v) in [("anonuid", &r.anonuid), ("anongid", &r.anongid)] {
            match v {
                Value::Value(n) => rule[k] = json!(n),
                Value::Null => {}
                Value::Unknown => return None,
            }
        }
        clients.push(rule);
    }
    let mut body = json!({ "path": known(&state.path)?, "clients": clients });
    match state.export_id {
        Value::Value(id) => body["id"] = json!(id),
        Value::Null => {}
        Value::Unknown => return None,
    }
    match state.replication {
        Value::Value(r) => body["replication"] = json!(r),
        Value::Null => {}
        Value::Unknown => return None,
    }
    Some(body)
}

/// Checks what is known with the server's own rules (path, each client rule, the id).
pub fn check(state: &ExportState) -> Vec<(AttributePath, String)> {
    let mut problems = Vec::new();
    if let Some(p) = known(&state.path) {
        let norm = normalize_path(p);
        if !p.starts_with('/') || p != norm {
            problems.push((
                AttributePath::new("path"),
                format!("{p:?}: write the path as the server keeps it, {norm:?}"),
            ));
            return problems;
        }
    }
    if let Value::Value(id) = state.export_id {
        if u32::try_from(id).is_err() {
            problems.push((
                AttributePath::new("export_id"),
                format!("{id}: an export id is 0 to 4294967295"),
            ));
            return problems;
        }
    }
    if let Value::Value(r) = state.replication {
        let checked = u8::try_from(r)
            .map_err(|_| format!("replication: {r} is out of range; give 1, 2 or 3"))
            .and_then(|n| nfs_server::export::check_replication(Some(n)));
        if let Err(e) = checked {
            problems.push((AttributePath::new("replication"), e));
            return problems;
        }
    }
    if matches!(&state.client, Value::Value(r) if r.is_empty()) {
        problems.push((
            AttributePath::new("client"),
            "give at least one client block, e.g. client { match = \"10.0.0.0/8\" }".into(),
        ));
        return problems;
    }
    let Value::Value(rules) = &state.client else {
        return problems;
    };
    // Each rule alone, so a problem is underlined at its own attribute. Host names are
    // checked for their form only: the server resolves them, not the Terraform machine.
    let mut checkable = state.clone();
    let mut clean = true;
    for (i, r) in rules.iter().enumerate() {
        let at = |a: &'static str| AttributePath::new("client").index(i as i64).attribute(a);
        if let Value::Value(m) = &r.matcher {
            match canonical_match(m) {
                Ok(Some(c)) if c != *m => {
                    problems.push((
                        at("match"),
                        format!("{m:?}: write it as the server keeps it, {c:?}"),
                    ));
                    clean = false;
                }
                Ok(_) => {}
                Err(e) => {
                    problems.push((at("match"), format!("{m:?}: {e}")));
                    clean = false;
                }
            }
        }
        if let Value::Value(a) = &r.access {
            if a != "rw" && a != "ro" {
                problems.push((at("access"), format!("{a:?}: use \"rw\" or \"ro\"")));
                clean = false;
            }
        }
        if let Value::Value(q) = &r.squash {
            if !["root", "all", "none"].contains(&q.as_str()) {
                problems.push((
                    at("squash"),
                    format!("{q:?}: use \"root\", \"all\" or \"none\""),
                ));
                clean = false;
            }
        }
        for (name, v) in [("anonuid", &r.anonuid), ("anongid", &r.anongid)] {
            if let Value::Value(n) = v {
                if u32::try_from(*n).is_err() {
                    problems.push((at(name), format!("{n}: an id is 0 to 4294967295")));
                    clean = false;
                }
            }
        }
    }
    if !clean {
        return problems;
    }
    if let Value::Value(rules) = &mut checkable.client {
        for r in rules.iter_mut() {
            if matches!(&r.matcher, Value::Value(m) if canonical_match(m) == Ok(None)) {
                r.matcher = Value::Value("*".into());
            }
        }
    }
    let Some(body) = create_body(&checkable) else {
        return problems;
    };
    let api: ApiExport = match serde_json::from_value(body) {
        Ok(a) => a,
        Err(e) => {
            problems.push((AttributePath::new("client"), e.to_string()));
            return problems;
        }
    };
    if let Err(e) = export_config(&api) {
        let field = e.split(':').next().unwrap_or_default();
        problems.push((
            field_path(field).unwrap_or_else(AttributePath::root),
            e.clone(),
        ));
    }
    problems
}

/// The id the server will give: the one asked for, else its hash of the path.
pub fn planned_id(state: &ExportState) -> Value<i64> {
    match (&state.export_id, &state.path) {
        (Value::Value(id), _) => Value::Value(*id),
        (Value::Null, Value::Value(p)) => Value::Value(i64::from(
            ExportConfig {
                path: normalize_path(p),
                id: None,
                clients: Vec::new(),
                replication: None,
                is_builtin_default: false,
            }
            .export_id(),
        )),
        _ => Value::Unknown,
    }
}

/// Fills the server's defaults into a plan, so the plan shows what the server will hold.
pub fn with_defaults(mut state: ExportState) -> ExportState {
    if let Value::Value(rules) = &mut state.client {
        for r in rules {
            if r.access == Value::Null {
                r.access = Value::Value(DEFAULT_ACCESS.into());
            }
            if r.squash == Value::Null {
                r.squash = Value::Value(DEFAULT_SQUASH.into());
            }
            if r.anonuid == Value::Null {
                r.anonuid = Value::Value(NOBODY);
            }
            if r.anongid == Value::Null {
                r.anongid = Value::Value(NOBODY);
            }
        }
    }
    state.export_id = planned_id(&state);
    state.id = match state.export_id {
        Value::Value(n) => Value::Value(n.to_string()),
        _ => Value::Unknown,
    };
    state
}

/// The API's export (an element of `GET /v1/exports`) as state.
pub fn from_api(v: &Json) -> ExportState {
    let id = v["id"].as_i64().unwrap_or_default();
    let rules = v["clients"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let s = |k: &str| match r[k].as_str() {
                        Some(s) => Value::Value(s.to_string()),
                        None => Value::Null,
                    };
                    let n = |k: &str| match r[k].as_i64() {
                        Some(n) => Value::Value(n),
                        None => Value::Null,
                    };
                    Rule {
                        matcher: s("match"),
                        access: s("access"),
                        squash: s("squash"),
                        anonuid: n("anonuid"),
                        anongid: n("anongid"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    ExportState {
        id: Value::Value(id.to_string()),
        path: match v["path"].as_str() {
            Some(p) => Value::Value(p.to_string()),
            None => Value::Null,
        },
        export_id: Value::Value(id),
        client: Value::Value(rules),
        replication: match v["replication"].as_i64() {
            Some(r) => Value::Value(r),
            None => Value::Null,
        },
    }
}

/// The `sluice_export` resource.
pub struct Export {
    pub api: Api,
}

impl Export {
    /// Finds an export by id ("123") or by path ("/proj").
    async fn fetch(&self, key: &str) -> Result<Option<ExportState>, CallError> {
        let list = self.api.call("GET", "/v1/exports".into(), None).await?;
        let found = list.as_array().into_iter().flatten().find(|e| {
            if key.starts_with('/') {
                e["path"].as_str() == Some(key)
            } else {
                e["id"].as_i64().map(|n| n.to_string()).as_deref() == Some(key)
            }
        });
        Ok(found.map(from_api))
    }
}

#[async_trait]
impl Resource for Export {
    type State<'a> = ExportState;
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
                    "A Sluice export: a directory (created if missing) served over NFS to the \
                     clients its rules admit. A change of `replication` is made in place; any \
                     other change replaces it.",
                ),
                attributes: map! {
                    "id" => attr(String, "The export id, in decimal.", Computed),
                    "path" => attr(String,
                        "Absolute path inside the file system, as the server writes it (no \
                         trailing `/`, no `.` or `..`).", Required),
                    "export_id" => attr(Number,
                        "The id written into file handles (default: a hash of the path).",
                        OptionalComputed),
                    "replication" => attr(Number,
                        "Copies of each file made in the export from now on: 1, 2 or 3 \
                         (default: the cluster's `cluster.replicas`, or the factor of an \
                         export above this one). Changed in place; files made before keep \
                         theirs.", Optional),
                },
                blocks: map! {
                    "client" => NestedBlock::List(Block {
                        description: Description::markdown(
                            "A client rule; the first that matches a client applies."),
                        attributes: map! {
                            "match" => attr(String,
                                "`*`, a CIDR (`10.0.0.0/8`), an address or a host name.", Required),
                            "access" => attr(String, "`rw` (default) or `ro`.", OptionalComputed),
                            "squash" => attr(String,
                                "`root` (default), `all` or `none`.", OptionalComputed),
                            "anonuid" => attr(Number,
                                "The uid squashed users get (default 65534).", OptionalComputed),
                            "anongid" => attr(Number,
                                "The gid squashed users get (default 65534).", OptionalComputed),
                        },
                        ..Default::default()
                    }),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: ExportState) -> Option<()> {
        for (path, message) in check(&config) {
            diags.error("invalid export", message, path);
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: ExportState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ExportState, ValueEmpty)> {
        let key = known(&state.id)?.to_string();
        if self.api.deferred() {
            return Some((state, private_state));
        }
        match self.fetch(&key).await {
            Ok(Some(now)) => Some((now, private_state)),
            Ok(None) => None,
            Err(e) => {
                report(diags, &format!("read export {key}"), &e, |_| None);
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: ExportState,
        _config: ExportState,
        _meta: ValueEmpty,
    ) -> Option<(ExportState, ValueEmpty)> {
        if let Some(p) = known(&proposed.path) {
            self.api.plan_export(p);
        }
        Some((with_defaults(proposed), Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: ExportState,
        proposed: ExportState,
        config: ExportState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ExportState, ValueEmpty, Vec<AttributePath>)> {
        // From the configuration, not the proposal: an optional attribute removed from the
        // configuration returns to the server's default (Terraform would keep the old value
        // of an optional-and-computed attribute).
        let planned = with_defaults(ExportState {
            id: proposed.id,
            path: proposed.path,
            export_id: config.export_id,
            client: config.client,
            replication: config.replication,
        });
        let mut replace = Vec::new();
        for (name, changed) in [
            ("path", prior.path != planned.path),
            ("export_id", prior.export_id != planned.export_id),
            ("client", prior.client != planned.client),
        ] {
            if changed {
                replace.push(AttributePath::new(name));
            }
        }
        if let (false, Some(p)) = (replace.is_empty(), known(&planned.path)) {
            self.api.plan_export(p);
        }
        Some((planned, private_state, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: ExportState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: ExportState,
        _config: ExportState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ExportState, ValueEmpty)> {
        let Some(body) = create_body(&planned) else {
            diags.root_error_short("the export's attributes are not all known at apply");
            return None;
        };
        match self
            .api
            .call("POST", "/v1/exports".into(), Some(body))
            .await
        {
            Ok(v) => {
                let mut state = planned;
                if let Some(id) = v["id"].as_i64() {
                    state.export_id = Value::Value(id);
                    state.id = Value::Value(id.to_string());
                }
                Some((state, private_state))
            }
            Err(e) => {
                report(diags, "create the export", &e, field_path);
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: ExportState,
        planned: ExportState,
        _config: ExportState,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(ExportState, ValueEmpty)> {
        // plan_update replaces the export on any other change: only the factor is left.
        let id = known(&prior.id)?.to_string();
        let body = match planned.replication {
            Value::Value(r) => json!({ "replication": r }),
            Value::Null => json!({ "replication": null }),
            Value::Unknown => {
                diags.root_error_short("the export's replication is not known at apply");
                return None;
            }
        };
        match self
            .api
            .call("PUT", format!("/v1/exports/{id}/replication"), Some(body))
            .await
        {
            Ok(_) => Some((planned, private_state)),
            Err(e) => {
                report(
                    diags,
                    &format!("set the replication of export {id}"),
                    &e,
                    field_path,
                );
                None
            }
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: ExportState,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let id = known(&state.id)?.to_string();
        match self
            .api
            .call("DELETE", format!("/v1/exports/{id}"), None)
            .await
        {
            Ok(_)
            | Err(CallError {
                status: Some(404), ..
            }) => Some(()),
            Err(e) => {
                report(diags, &format!("remove export {id}"), &e, |_| None);
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(ExportState, ValueEmpty)> {
        match self.fetch(id.trim()).await {
            Ok(Some(state)) => Some((state, Default::default())),
            Ok(None) => {
                diags.root_error_short(format!(
                    "no export with id or path {id:?} (see `sluice export list`)"
                ));
                None
            }
            Err(e) => {
                report(diags, &format!("read export {id}"), &e, |_| None);
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

    fn export(path: &str, matcher: &str) -> ExportState {
        ExportState {
            id: Value::Null,
            path: s(path),
            export_id: Value::Null,
            client: Value::Value(vec![Rule {
                matcher: s(matcher),
                ..Default::default()
            }]),
            replication: Value::Null,
        }
    }

    #[test]
    fn a_replication_factor_out_of_range_is_refused_at_plan_and_one_in_range_is_sent() {
        for bad in [0, 4, -1, 300] {
            let e = ExportState {
                replication: Value::Value(bad),
                ..export("/ckpt", "*")
            };
            let problems = check(&e);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(problems[0].0, AttributePath::new("replication"));
            assert!(problems[0].1.starts_with("replication: "), "{problems:?}");
        }
        let e = ExportState {
            replication: Value::Value(2),
            ..export("/ckpt", "*")
        };
        assert!(check(&e).is_empty());
        assert_eq!(create_body(&e).expect("known")["replication"], 2);
        assert!(create_body(&export("/ckpt", "*")).expect("known")["replication"].is_null());
    }

    #[test]
    fn a_plan_shows_the_servers_defaults_and_the_id_it_will_give() {
        let st = with_defaults(export("/datasets", "10.0.0.0/8"));
        let Value::Value(rules) = &st.client else {
            panic!()
        };
        assert_eq!(rules[0].access, s("rw"));
        assert_eq!(rules[0].squash, s("root"));
        assert_eq!(rules[0].anonuid, Value::Value(65534));
        let Value::Value(id) = st.export_id else {
            panic!("the id is known at plan")
        };
        assert_eq!(st.id, s(&id.to_string()));
    }

    #[test]
    fn a_bad_client_match_is_reported_at_its_block() {
        let problems = check(&export("/datasets", "10.0.0.0/99"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].0,
            AttributePath::new("client").index(0).attribute("match")
        );
    }

    #[test]
    fn a_path_the_server_would_rewrite_is_refused_at_plan() {
        let problems = check(&export("/datasets/", "*"));
        assert_eq!(problems[0].0, AttributePath::new("path"));
        assert!(problems[0].1.contains("\"/datasets\""), "{problems:?}");
        assert!(check(&export("/datasets", "*")).is_empty());
    }

    #[test]
    fn a_bad_access_value_is_refused_at_plan() {
        let mut e = export("/d", "*");
        if let Value::Value(r) = &mut e.client {
            r[0].access = s("rx");
        }
        let problems = check(&e);
        assert_eq!(
            problems[0].0,
            AttributePath::new("client").index(0).attribute("access"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_match_the_server_would_rewrite_is_refused_at_plan() {
        let problems = check(&export("/d", "10.0.0.5"));
        assert_eq!(
            problems[0].0,
            AttributePath::new("client").index(0).attribute("match")
        );
        assert!(problems[0].1.contains("\"10.0.0.5/32\""), "{problems:?}");
        assert!(check(&export("/d", "FD00::/8"))[0].1.contains("fd00::/8"));
        assert!(check(&export("/d", "10.0.0.5/32")).is_empty());
    }

    #[test]
    fn a_host_name_is_checked_for_its_form_only() {
        assert!(check(&export("/d", "gpu-node-1.cluster.invalid")).is_empty());
        assert_eq!(
            check(&export("/d", "gpu node"))[0].0,
            AttributePath::new("client").index(0).attribute("match")
        );
    }

    #[test]
    fn squash_and_ids_are_checked_at_their_own_attribute() {
        let mut e = export("/d", "*");
        if let Value::Value(r) = &mut e.client {
            r[0].squash = s("nobody");
            r[0].anongid = Value::Value(-1);
        }
        let paths: Vec<AttributePath> = check(&e).into_iter().map(|p| p.0).collect();
        assert_eq!(
            paths,
            vec![
                AttributePath::new("client").index(0).attribute("squash"),
                AttributePath::new("client").index(0).attribute("anongid"),
            ]
        );
    }

    #[test]
    fn the_api_export_round_trips_through_state() {
        let v = json!({"id": 7, "path": "/d", "source": "api", "clients": [
            {"match": "*", "access": "ro", "squash": "all", "anonuid": 1, "anongid": 2}]});
        let st = from_api(&v);
        assert_eq!(st.id, s("7"));
        let body = create_body(&st).expect("known");
        assert_eq!(
            body,
            json!({"path": "/d", "id": 7, "clients": [
                {"match": "*", "access": "ro", "squash": "all", "anonuid": 1, "anongid": 2}]})
        );
        assert_eq!(with_defaults(st.clone()), st);
    }
}
