//! Exports and their client rules: who may reach which tree, with which identity.
//!
//! Rules are checked on *every* call through the export id inside the file handle, not only at
//! MOUNT time: a handle obtained while allowed stops working once the rules change, and a
//! handle passed to another client gives that client only what its own rule allows.

use std::net::IpAddr;

use backend::{Cred, FileId};
use serde::Deserialize;

/// A configuration problem, naming the field and saying what to do.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// How credentials are mapped before they reach the store.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Squash {
    /// uid 0 / gid 0 become anonuid / anongid (the default, as knfsd's root_squash).
    #[default]
    Root,
    /// Every user becomes anonuid / anongid.
    All,
    /// Credentials pass unchanged (knfsd's no_root_squash).
    None,
}

/// Which clients a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMatch {
    /// "*": every client.
    Any,
    /// "10.0.0.0/8", "fd00::/8" or a single address.
    Cidr { net: IpAddr, prefix: u8 },
    /// A host name, resolved at startup to its addresses.
    Host { name: String, addrs: Vec<IpAddr> },
}

impl ClientMatch {
    pub fn parse(s: &str) -> Result<ClientMatch, String> {
        if s == "*" {
            return Ok(ClientMatch::Any);
        }
        if let Some((net, prefix)) = s.split_once('/') {
            let net: IpAddr = net
                .parse()
                .map_err(|_| format!("{s:?}: {net:?} is not an IP address"))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be a number from 0 to {max}"))?;
            return Ok(ClientMatch::Cidr { net, prefix });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(ClientMatch::Cidr { net: ip, prefix });
        }
        use std::net::ToSocketAddrs;
        let addrs: Vec<IpAddr> = (s, 0)
            .to_socket_addrs()
            .map_err(|e| {
                format!("{s:?} is neither \"*\", a CIDR, an address, nor a resolvable host: {e}")
            })?
            .map(|a| a.ip())
            .collect();
        Ok(ClientMatch::Host {
            name: s.to_string(),
            addrs,
        })
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            ClientMatch::Any => true,
            ClientMatch::Cidr { net, prefix } => in_prefix(canonical(*net), *prefix, ip),
            ClientMatch::Host { addrs, .. } => addrs.iter().any(|a| canonical(*a) == ip),
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) compare as IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn in_prefix(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// One client rule of an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRule {
    pub matcher: ClientMatch,
    pub read_only: bool,
    pub squash: Squash,
    pub anonuid: u32,
    pub anongid: u32,
}

impl ClientRule {
    /// Maps the caller's credentials (None for AUTH_NONE) through this rule's squashing.
    pub fn map_cred(&self, uid: u32, gid: u32, groups: &[u32], auth_none: bool) -> Cred {
        let anon = Cred {
            uid: self.anonuid,
            gid: self.anongid,
            groups: Vec::new(),
        };
        if auth_none {
            return anon;
        }
        match self.squash {
            Squash::All => anon,
            Squash::None => Cred {
                uid,
                gid,
                groups: groups.to_vec(),
            },
            Squash::Root => Cred {
                uid: if uid == 0 { self.anonuid } else { uid },
                gid: if gid == 0 { self.anongid } else { gid },
                groups: groups
                    .iter()
                    .map(|&g| if g == 0 { self.anongid } else { g })
                    .collect(),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matcher: String,
    #[serde(default = "default_access")]
    access: String,
    #[serde(default)]
    squash: Squash,
    #[serde(default = "nobody")]
    anonuid: u32,
    #[serde(default = "nobody")]
    anongid: u32,
}

fn default_access() -> String {
    "rw".into()
}

fn nobody() -> u32 {
    65534
}

/// An export as configured.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Path inside the store, e.g. "/" or "/projects/a". Created at startup if missing.
    pub path: String,
    /// Stable id written into file handles. Default: a hash of `path`. Changing it (or the
    /// path, when the id is derived) makes every handle of this export stale.
    #[serde(default)]
    pub id: Option<u32>,
    /// Client rules, first match wins. A client that matches none is refused.
    #[serde(default, deserialize_with = "deserialize_rules")]
    pub clients: Vec<ClientRule>,
    /// Copies of each file made in the export (1, 2 or 3), kept on its root directory; `None`:
    /// the cluster's default (`cluster.replicas`). Files made before a change keep theirs.
    #[serde(default)]
    pub replication: Option<u8>,
    #[serde(skip)]
    pub is_builtin_default: bool,
}

/// Parsing of `match` is deferred to `validate` so its error can name the rule's position.
fn deserialize_rules<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ClientRule>, D::Error> {
    let raw: Vec<RawRule> = Vec::deserialize(d)?;
    raw.into_iter()
        .map(|r| {
            let read_only = match r.access.as_str() {
                "rw" => false,
                "ro" => true,
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "access = {other:?}: use \"rw\" or \"ro\""
                    )))
                }
            };
            Ok(ClientRule {
                matcher: ClientMatch::Host {
                    name: r.matcher,
                    addrs: Vec::new(),
                },
                read_only,
                squash: r.squash,
                anonuid: r.anonuid,
                anongid: r.anongid,
            })
        })
        .collect()
}

impl ExportConfig {
    pub fn export_id(&self) -> u32 {
        self.id.unwrap_or_else(|| fnv1a32(self.path.as_bytes()))
    }

    /// Checks the path and resolves each rule's `match`.
    pub(crate) fn validate(&mut self, i: usize) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || self.path.split('/').any(|c| c == ".." || c == ".") {
            return Err(ConfigError(format!(
                "export[{i}].path: {:?} must be absolute and contain no \".\" or \"..\"",
                self.path
            )));
        }
        if let Some(c) = self
            .path
            .split('/')
            .find(|c| c.len() > backend::NAME_LEN_MAX)
        {
            return Err(ConfigError(format!(
                "export[{i}].path: component {:?}... is longer than {} bytes",
                &c[..16],
                backend::NAME_LEN_MAX
            )));
        }
        self.path = normalize_path(&self.path);
        check_replication(self.replication).map_err(|e| ConfigError(format!("export[{i}].{e}")))?;
        if self.clients.is_empty() {
            return Err(ConfigError(format!(
                "export[{i}].clients: no client rule, so nobody could mount {:?}; add e.g. \
                 [[export.clients]] match = \"10.0.0.0/8\"",
                self.path
            )));
        }
        for (j, rule) in self.clients.iter_mut().enumerate() {
            if let ClientMatch::Host { name, addrs } = &rule.matcher {
                if addrs.is_empty() {
                    rule.matcher = ClientMatch::parse(name)
                        .map_err(|e| ConfigError(format!("export[{i}].clients[{j}].match: {e}")))?;
                }
            }
        }
        Ok(())
    }

    /// The path components below the store root.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|c| !c.is_empty())
    }
}

/// Checks an export's replication factor; the error names the field.
pub fn check_replication(r: Option<u8>) -> Result<(), String> {
    match r {
        Some(n) if !(1..=backend::engine::REPLICATION_MAX).contains(&n) => Err(format!(
            "replication: {n} is out of range; give 1, 2 or 3, or leave it out for the \
             cluster's default (cluster.replicas)"
        )),
        _ => Ok(()),
    }
}

/// An export path in its one spelling: "/p/" and "//p" are "/p", one export per directory.
pub fn normalize_path(path: &str) -> String {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    format!("/{}", components.join("/"))
}

fn fnv1a32(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ x as u32).wrapping_mul(0x0100_0193)
    })
}

/// An export at run time: its configuration and the root it resolved to in the store.
#[derive(Clone, Debug)]
pub struct Export {
    pub id: u32,
    pub path: String,
    pub root: FileId,
    pub rules: Vec<ClientRule>,
    /// The replication factor set on the root (`None`: the cluster's default).
    pub replication: Option<u8>,
}

impl Export {
    /// The first rule matching `ip`, or None: the client may not use this export.
    pub fn rule_for(&self, ip: IpAddr) -> Option<&ClientRule> {
        self.rules.iter().find(|r| r.matcher.matches(ip))
    }
}

/// All exports, by id and by path. Immutable: a change (admin API) builds a new table and
/// swaps it in, so a request sees one consistent table without holding a lock.
#[derive(Clone, Debug, Default)]
pub struct ExportTable {
    exports: Vec<std::sync::Arc<Export>>,
}

impl ExportTable {
    pub fn new(exports: Vec<Export>) -> ExportTable {
        ExportTable {
            exports: exports.into_iter().map(std::sync::Arc::new).collect(),
        }
    }

    /// A table with `export` added (ids and paths must be unique: checked by the caller).
    pub fn with(&self, export: Export) -> ExportTable {
        let mut exports = self.exports.clone();
        exports.push(std::sync::Arc::new(export));
        ExportTable { exports }
    }

    /// A table with `export` in place of the export of the same id.
    pub fn replaced(&self, export: Export) -> ExportTable {
        let exports = self
            .exports
            .iter()
            .map(|e| {
                if e.id == export.id {
                    std::sync::Arc::new(export.clone())
                } else {
                    std::sync::Arc::clone(e)
                }
            })
            .collect();
        ExportTable { exports }
    }

    /// A table without the export `id`.
    pub fn without(&self, id: u32) -> ExportTable {
        ExportTable {
            exports: self
                .exports
                .iter()
                .filter(|e| e.id != id)
                .cloned()
                .collect(),
        }
    }

    /// A table with only the exports `keep` accepts.
    pub fn filtered(&self, keep: impl Fn(&Export) -> bool) -> ExportTable {
        ExportTable {
            exports: self.exports.iter().filter(|e| keep(e)).cloned().collect(),
        }
    }

    pub fn by_id(&self, id: u32) -> Option<&std::sync::Arc<Export>> {
        self.exports.iter().find(|e| e.id == id)
    }

    /// The export named by a MOUNT path: empty and repeated components are ignored, so "",
    /// "/", "//data/" and "/data" name what they look like (libnfs sends "" and "//x").
    pub fn by_path(&self, path: &str) -> Option<&std::sync::Arc<Export>> {
        fn components(p: &str) -> impl Iterator<Item = &str> {
            p.split('/').filter(|c| !c.is_empty())
        }
        self.exports
            .iter()
            .find(|e| components(&e.path).eq(components(path)))
    }

    pub fn iter(&self) -> impl Iterator<Item = &std::sync::Arc<Export>> {
        self.exports.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(squash: Squash) -> ClientRule {
        ClientRule {
            matcher: ClientMatch::Any,
            read_only: false,
            squash,
            anonuid: 65534,
            anongid: 65533,
        }
    }

    #[test]
    fn cidr_rule_matches_inside_and_not_outside_its_prefix() {
        let m = ClientMatch::parse("10.77.0.0/24").unwrap();
        assert!(m.matches("10.77.0.10".parse().unwrap()));
        assert!(!m.matches("10.77.1.10".parse().unwrap()));
        assert!(m.matches("::ffff:10.77.0.3".parse().unwrap()));
    }

    #[test]
    fn zero_prefix_matches_everything_of_its_family() {
        let m = ClientMatch::parse("0.0.0.0/0").unwrap();
        assert!(m.matches("203.0.113.9".parse().unwrap()));
        assert!(!m.matches("::2".parse().unwrap()));
    }

    #[test]
    fn root_squash_maps_only_root() {
        let r = rule(Squash::Root);
        assert_eq!(r.map_cred(0, 0, &[0, 5], false).uid, 65534);
        assert_eq!(r.map_cred(0, 0, &[0, 5], false).groups, vec![65533, 5]);
        assert_eq!(r.map_cred(1000, 100, &[], false).uid, 1000);
    }

    #[test]
    fn all_squash_and_auth_none_map_to_anonymous() {
        assert_eq!(rule(Squash::All).map_cred(1000, 100, &[], false).uid, 65534);
        assert_eq!(rule(Squash::None).map_cred(0, 0, &[], true).uid, 65534);
        assert_eq!(rule(Squash::None).map_cred(0, 0, &[], false).uid, 0);
    }

    #[test]
    fn mount_paths_ignore_empty_and_repeated_components() {
        let export = |path: &str| Export {
            id: 1,
            path: path.into(),
            root: FileId {
                ino: 1,
                generation: 1,
            },
            rules: Vec::new(),
            replication: None,
        };
        let t = ExportTable::new(vec![export("/"), export("/data/sets")]);
        assert_eq!(t.by_path("").map(|e| e.path.as_str()), Some("/"));
        assert_eq!(
            t.by_path("//data//sets/").map(|e| e.path.as_str()),
            Some("/data/sets")
        );
        assert!(t.by_path("/data").is_none());
    }

    #[test]
    fn derived_export_ids_are_stable() {
        assert_eq!(fnv1a32(b"/"), fnv1a32(b"/"));
        assert_ne!(fnv1a32(b"/a"), fnv1a32(b"/b"));
    }
}
