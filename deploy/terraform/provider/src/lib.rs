//! `terraform-provider-sluice`: Sluice mount targets, exports and bandwidth tiers as Terraform
//! resources, over the admin API.
//!
//! The plugin protocol (6, gRPC with Terraform's mTLS handshake) is the `tf-provider` crate's.
//! What is ours: the schemas, the mapping between Terraform values and the API's JSON (pure
//! functions, unit-tested without a server), plan-time checks with the server's own rules
//! (`nfs_server::qos`, `nfs_server::ops::admin::export_config`) and the calls, made with the
//! CLI's admin client (`nfs_server::ops::cli::Client`: bearer token, https with a CA file).
//!
//! Every `read` asks the API, so a change made with `sluice target tier` or `sluice export
//! remove` shows up as drift in the next plan.

pub mod data;
pub mod export;
pub mod placement;
pub mod target;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nfs_server::ops::cli::{CliError, Client};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};

/// The admin API's address when neither `endpoint` nor `SLUICE_API` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9050";

/// The configured API client, shared by the provider and every resource it hands out
/// (Terraform asks for the resources before it configures the provider).
#[derive(Clone, Default)]
pub struct Api {
    client: Arc<Mutex<Option<Arc<Client>>>>,
    /// Export paths this provider instance planned to create: a target planned in the same
    /// run may name them before they exist on the server (Terraform plans the export first
    /// when the target refers to `sluice_export.NAME.path`).
    planned_exports: Arc<Mutex<BTreeSet<String>>>,
    /// Some provider setting comes from a value Terraform knows only at apply (another
    /// resource's attribute): nothing is called until then, rather than the default server.
    deferred: Arc<std::sync::atomic::AtomicBool>,
}

/// An API call that failed, as Terraform should show it.
#[derive(Debug)]
pub struct CallError {
    /// The HTTP status, when the API answered.
    pub status: Option<u16>,
    pub message: String,
}

impl Api {
    fn set(&self, client: Client) {
        *self.client.lock().expect("api lock poisoned") = Some(Arc::new(client));
        self.deferred
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the provider's settings are not known yet (see `deferred`): plans then keep
    /// what the state holds and skip the server's checks.
    pub fn deferred(&self) -> bool {
        self.deferred.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn plan_export(&self, path: &str) {
        self.planned_exports
            .lock()
            .expect("planned exports lock poisoned")
            .insert(path.to_string());
    }

    /// For each of `paths` that is neither on the server nor planned in this run, its index.
    pub async fn missing_exports(&self, paths: &[String]) -> Result<Vec<usize>, CallError> {
        let list = self.call("GET", "/v1/exports".into(), None).await?;
        let on_server: BTreeSet<&str> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["path"].as_str())
            .collect();
        let planned = self
            .planned_exports
            .lock()
            .expect("planned exports lock poisoned");
        Ok(paths
            .iter()
            .enumerate()
            .filter(|(_, p)| !on_server.contains(p.as_str()) && !planned.contains(p.as_str()))
            .map(|(i, _)| i)
            .collect())
    }

    /// One request; the blocking client runs off the async runtime, so Terraform's parallel
    /// operations (10 by default) do not queue behind each other.
    pub async fn call(
        &self,
        method: &'static str,
        path: String,
        body: Option<Json>,
    ) -> Result<Json, CallError> {
        let client = self.client.lock().expect("api lock poisoned").clone();
        if client.is_none() && self.deferred() {
            return Err(CallError {
                status: None,
                message: "the provider's settings (endpoint, token, token_file, ca_file) are \
                          not known until apply"
                    .into(),
            });
        }
        let Some(client) = client else {
            return Err(CallError {
                status: None,
                message: "the provider is not configured (a provider \"sluice\" block, or \
                          SLUICE_API and SLUICE_TOKEN)"
                    .into(),
            });
        };
        let joined =
            tokio::task::spawn_blocking(move || client.call(method, &path, body.as_ref())).await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(CliError::Api { status, message })) => Err(CallError {
                status: Some(status),
                message,
            }),
            Ok(Err(e)) => Err(CallError {
                status: None,
                message: in_provider_terms(&e.to_string()),
            }),
            Err(e) => Err(CallError {
                status: None,
                message: format!("the admin API call did not finish: {e}"),
            }),
        }
    }
}

/// The CLI client's messages name its flags; here the provider's settings are meant.
pub fn in_provider_terms(message: &str) -> String {
    message
        .replace("--token-file", "token_file")
        .replace("--token", "token")
        .replace("--api", "endpoint")
        .replace("--ca", "ca_file")
}

/// Reports an API error; the API prefixes its messages with the field at fault ("tier: ...",
/// "clients[0].match: ..."), which `field` maps to the attribute Terraform should underline.
pub fn report(
    diags: &mut Diagnostics,
    what: &str,
    e: &CallError,
    field: impl Fn(&str) -> Option<AttributePath>,
) {
    let summary = match e.status {
        Some(s) => format!("the Sluice admin API refused to {what} (HTTP {s})"),
        None => format!("could not {what}"),
    };
    let prefix = e.message.split(':').next().unwrap_or_default().trim();
    match field(prefix) {
        Some(path) => diags.error(summary, e.message.clone(), path),
        None => diags.root_error(summary, e.message.clone()),
    }
}

/// The provider block.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ProviderConfig {
    #[serde(default)]
    pub endpoint: Value<String>,
    #[serde(default)]
    pub token: Value<String>,
    #[serde(default)]
    pub token_file: Value<String>,
    #[serde(default)]
    pub ca_file: Value<String>,
}

/// Where the provider's settings come from: the block, else the CLI's environment variables
/// (`SLUICE_API`, `SLUICE_TOKEN`, `SLUICE_CA`), else the defaults. For the token, the block's
/// `token`, then its `token_file`, then `SLUICE_TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// Resolves the provider block against the environment (given as a lookup, for tests).
pub fn settings(config: &ProviderConfig, env: impl Fn(&str) -> Option<String>) -> Settings {
    let given = |v: &Value<String>, var: &str| match v {
        Value::Value(s) if !s.is_empty() => Some(s.clone()),
        _ => env(var).filter(|s| !s.is_empty()),
    };
    Settings {
        endpoint: given(&config.endpoint, "SLUICE_API").unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
        token: match (&config.token, &config.token_file) {
            (Value::Value(t), _) if !t.is_empty() => Some(t.clone()),
            (_, Value::Value(f)) if !f.is_empty() => None,
            _ => env("SLUICE_TOKEN").filter(|t| !t.is_empty()),
        },
        token_file: match &config.token_file {
            Value::Value(s) if !s.is_empty() => Some(PathBuf::from(s)),
            _ => None,
        },
        ca_file: given(&config.ca_file, "SLUICE_CA").map(PathBuf::from),
    }
}

/// The Sluice provider.
#[derive(Clone, Default)]
pub struct SluiceProvider {
    api: Api,
}

/// An attribute of a schema: its type, a markdown description, and who sets it.
pub fn attr(ty: AttributeType, description: &str, constraint: AttributeConstraint) -> Attribute {
    Attribute {
        attr_type: ty,
        description: Description::markdown(description.to_string()),
        constraint,
        ..Default::default()
    }
}

fn optional_string(description: &str) -> Attribute {
    attr(
        AttributeType::String,
        description,
        AttributeConstraint::Optional,
    )
}

#[async_trait]
impl Provider for SluiceProvider {
    type Config<'a> = ProviderConfig;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                description: Description::markdown(
                    "Sluice, a scale-out NFS server: mount targets, exports and bandwidth tiers \
                     through its admin API.",
                ),
                attributes: map! {
                    "endpoint" => optional_string(
                        "Admin API URL, `http://HOST:PORT` or `https://HOST:PORT` (default: \
                         `SLUICE_API`, else `http://127.0.0.1:9050`)."),
                    "token" => Attribute {
                        sensitive: true,
                        ..optional_string(
                            "Bearer token: the content of the server's `<data_dir>/admin.token` \
                             (default: `SLUICE_TOKEN`).")
                    },
                    "token_file" => optional_string(
                        "File holding the token, e.g. `/var/lib/sluice/admin.token`, when \
                         `token` and `SLUICE_TOKEN` are not set."),
                    "ca_file" => optional_string(
                        "PEM file with the certificate (or its CA) an `https://` endpoint must \
                         present (default: `SLUICE_CA`)."),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: ProviderConfig) -> Option<()> {
        if let Value::Value(e) = &config.endpoint {
            if let Err(err) = nfs_server::ops::cli::ApiUrl::parse(e) {
                diags.error(
                    "invalid endpoint",
                    in_provider_terms(&err.to_string()),
                    AttributePath::new("endpoint"),
                );
            }
        }
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: ProviderConfig,
    ) -> Option<()> {
        let settings_known = [
            &config.endpoint,
            &config.token,
            &config.token_file,
            &config.ca_file,
        ];
        if settings_known.iter().any(|v| matches!(v, Value::Unknown)) {
            self.api
                .deferred
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Some(());
        }
        let s = settings(&config, |k| std::env::var(k).ok());
        let token = match (&s.token, &s.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(f)) => match std::fs::read_to_string(f) {
                Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
                Ok(_) => {
                    diags.error_short(
                        format!("the token file {} is empty", f.display()),
                        AttributePath::new("token_file"),
                    );
                    return None;
                }
                Err(e) => {
                    diags.error_short(
                        format!("cannot read the token file {}: {e}", f.display()),
                        AttributePath::new("token_file"),
                    );
                    return None;
                }
            },
            (None, None) => {
                diags.root_error(
                    "no admin API token",
                    "set `token` or `token_file` in the provider block, or SLUICE_TOKEN, to the \
                     content of the server's <data_dir>/admin.token",
                );
                return None;
            }
        };
        let client = match Client::with_token(&s.endpoint, &token) {
            Ok(c) => c,
            Err(e) => {
                diags.error_short(
                    in_provider_terms(&e.to_string()),
                    AttributePath::new("endpoint"),
                );
                return None;
            }
        };
        let client = match &s.ca_file {
            Some(ca) => match client.with_ca(ca) {
                Ok(c) => c,
                Err(e) => {
                    diags.error_short(
                        in_provider_terms(&e.to_string()),
                        AttributePath::new("ca_file"),
                    );
                    return None;
                }
            },
            None => client,
        };
        self.api.set(client);
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        Some(map! {
            "mount_target" => target::MountTarget { api: self.api.clone() },
            "export" => export::Export { api: self.api.clone() },
            "target_placement" => placement::Placement { api: self.api.clone() },
        })
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(map! {
            "status" => data::Status { api: self.api.clone() },
            "cluster" => data::Cluster { api: self.api.clone() },
        })
    }
}

/// An optional nested block (at most one), as Terraform sends it: a list of zero or one
/// objects, or unknown as a whole (a `dynamic` block whose `for_each` is not known yet, as in
/// `terraform validate` of a module). tf-provider's `serde_as_vec` cannot take the latter.
pub mod optional_block {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
    use tf_provider::value::Value;

    pub fn serialize<T: Serialize, S: Serializer>(v: &Value<T>, s: S) -> Result<S::Ok, S::Error> {
        let list: Value<Vec<&T>> = match v {
            Value::Value(t) => Value::Value(vec![t]),
            Value::Null => Value::Value(Vec::new()),
            Value::Unknown => Value::Unknown,
        };
        list.serialize(s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Value<T>, D::Error> {
        match Value::<Vec<Value<T>>>::deserialize(d)? {
            Value::Unknown => Ok(Value::Unknown),
            Value::Null => Ok(Value::Null),
            Value::Value(items) => {
                let mut it = items.into_iter();
                match (it.next(), it.next()) {
                    (None, _) => Ok(Value::Null),
                    (Some(one), None) => Ok(one),
                    (Some(_), Some(_)) => Err(D::Error::custom("at most one such block")),
                }
            }
        }
    }
}

/// A known string, or None while Terraform does not know it yet (or it is null).
pub fn known(v: &Value<String>) -> Option<&str> {
    match v {
        Value::Value(s) => Some(s),
        _ => None,
    }
}

/// A list whose every element is known.
pub fn known_list(v: &Value<Vec<Value<String>>>) -> Option<Vec<String>> {
    match v {
        Value::Value(items) => items.iter().map(|i| known(i).map(str::to_string)).collect(),
        _ => None,
    }
}

/// A JSON array of strings as a Terraform list.
pub fn string_list(v: &Json) -> Value<Vec<Value<String>>> {
    Value::Value(
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(|s| Value::Value(s.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_block_may_be_unknown_as_a_whole() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct S {
            #[serde(with = "optional_block")]
            b: Value<Vec<u8>>,
        }
        for v in [Value::Unknown, Value::Null, Value::Value(vec![1, 2])] {
            let s = S { b: v };
            let bytes = rmp_serde::to_vec_named(&s).expect("encodes");
            let back: S = rmp_serde::from_slice(&bytes).expect("decodes");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn settings_prefer_the_block_then_the_environment_then_the_default() {
        let env = |k: &str| match k {
            "SLUICE_API" => Some("http://10.0.0.1:9050".to_string()),
            "SLUICE_TOKEN" => Some("envtoken".to_string()),
            _ => None,
        };
        let none = ProviderConfig::default();
        let s = settings(&none, env);
        assert_eq!(s.endpoint, "http://10.0.0.1:9050");
        assert_eq!(s.token.as_deref(), Some("envtoken"));
        assert_eq!(s.ca_file, None);
        let block = ProviderConfig {
            endpoint: Value::Value("https://sluice.example:9050".into()),
            token: Value::Value("blocktoken".into()),
            ..Default::default()
        };
        let s = settings(&block, env);
        assert_eq!(s.endpoint, "https://sluice.example:9050");
        assert_eq!(s.token.as_deref(), Some("blocktoken"));
        let s = settings(&none, |_| None);
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(s.token, None);
        // A token file in the block beats SLUICE_TOKEN.
        let file = ProviderConfig {
            token_file: Value::Value("/etc/sluice/admin.token".into()),
            ..Default::default()
        };
        let s = settings(&file, env);
        assert_eq!(s.token, None);
        assert_eq!(s.token_file, Some(PathBuf::from("/etc/sluice/admin.token")));
    }

    #[test]
    fn client_messages_name_the_providers_settings() {
        assert_eq!(
            in_provider_terms("is `sluice serve` running? (set --api or SLUICE_API)"),
            "is `sluice serve` running? (set endpoint or SLUICE_API)"
        );
        assert_eq!(
            in_provider_terms("give --ca FILE; or --token-file"),
            "give ca_file FILE; or token_file"
        );
    }

    #[test]
    fn an_api_error_is_underlined_at_the_field_it_names() {
        let mut diags = Diagnostics::default();
        let e = CallError {
            status: Some(400),
            message: "tier: unknown tier \"3g\"".into(),
        };
        report(&mut diags, "create the mount target", &e, |f| {
            (f == "tier").then(|| AttributePath::new("bandwidth_tier"))
        });
        assert_eq!(diags.errors.len(), 1);
        let d = &diags.errors[0];
        assert!(d.summary.contains("HTTP 400"), "{d:?}");
        assert!(d.detail.contains("unknown tier"), "{d:?}");
        assert_eq!(d.attribute, AttributePath::new("bandwidth_tier"));
    }
}
