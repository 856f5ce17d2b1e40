//! The admin HTTP API of the real binary (docs/admin-api.md, docs/openapi.json): the OpenAPI
//! document names exactly the server's routes; authentication and error statuses; status;
//! targets created, retiered and deleted at run time (their listeners serve NFS, their rates
//! reach /metrics); exports added and removed (handles turn stale); changes survive a restart;
//! residency reports a sparse file's extents.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nfs_proto::v3::{self, StableHow};
use serde_json::{json, Value};
use sluice_tests::{free_port, nfsstat, RpcClient, Sluice, IO_TIMEOUT};

// ---------------------------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// A response: status, raw body, and the body parsed as JSON (None if empty or not JSON).
#[derive(Debug)]
struct Resp {
    status: u16,
    text: String,
    json: Option<Value>,
}

impl Resp {
    /// The `error` string of an error body; panics if there is none.
    fn error(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|v| v["error"].as_str())
            .unwrap_or_else(|| panic!("no JSON error body in {self:?}"))
    }

    fn body(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON body in {self:?}"))
    }
}

/// Connects, retrying for a few seconds (a listener may come up just after "sluice ready").
fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return s;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
}

/// Sends raw request bytes and parses the answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = connect(addr);
    s.write_all(request).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let length: Option<usize> = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    if let Some(n) = length {
        assert_eq!(
            n,
            body.len(),
            "Content-Length differs from the body: {text:?}"
        );
    }
    Resp {
        status,
        text: body.to_string(),
        json: serde_json::from_str(body).ok(),
    }
}

/// One request with an optional bearer token and optional body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    exchange(addr, &bytes)
}

/// A server with the admin API and metrics on free loopback ports, and its token.
struct Api {
    s: Sluice,
    admin: SocketAddr,
    metrics: SocketAddr,
    token: String,
}

impl Api {
    /// `extra` is appended to the config (e.g. a `[[target]]`).
    fn start(extra: &str) -> Api {
        Api::start_with(extra, false)
    }

    fn start_with(extra: &str, memory: bool) -> Api {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let toml = format!(
            "[server]\nadmin_listen = \"{admin}\"\nmetrics_listen = \"{metrics}\"\n\n{extra}"
        );
        let s = Sluice::start_with(sluice_tests::Options {
            config: Some(toml),
            memory,
            ..sluice_tests::Options::default()
        });
        let token = read_token(&s.data_dir());
        Api {
            s,
            admin,
            metrics,
            token,
        }
    }

    fn get(&self, path: &str) -> Resp {
        request(self.admin, "GET", path, Some(&self.token), None)
    }

    fn delete(&self, path: &str) -> Resp {
        request(self.admin, "DELETE", path, Some(&self.token), None)
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        request(self.admin, method, path, Some(&self.token), Some(&b))
    }

    /// The sample `sluice_target_rate_bytes_per_second{target=..,direction=..}` of /metrics.
    fn rate_metric(&self, target: &str, direction: &str) -> Option<f64> {
        let r = request(self.metrics, "GET", "/metrics", None, None);
        assert_eq!(r.status, 200, "GET /metrics: {r:?}");
        r.text.lines().find_map(|l| {
            let rest = l.strip_prefix("sluice_target_rate_bytes_per_second{")?;
            let (labels, value) = rest.split_once("} ")?;
            let labels: BTreeSet<&str> = labels.split(',').collect();
            let want_t = format!("target=\"{target}\"");
            let want_d = format!("direction=\"{direction}\"");
            (labels.contains(want_t.as_str()) && labels.contains(want_d.as_str()))
                .then(|| value.trim().parse().ok())?
        })
    }
}

/// The token file the server created on first start.
fn read_token(data_dir: &Path) -> String {
    let p = data_dir.join("admin.token");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(&p) {
            Ok(t) if !t.trim().is_empty() => return t.trim().to_string(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            r => panic!("no token in {}: {r:?}", p.display()),
        }
    }
}

/// A free port on 127.0.0.x (bound and released).
fn free_port_on(ip: [u8; 4]) -> SocketAddr {
    let l = std::net::TcpListener::bind(SocketAddr::from((ip, 0))).expect("bind loopback alias");
    l.local_addr().unwrap()
}

/// A config-file target "cfg" on 127.0.0.2, tier 1g.
fn cfg_target() -> String {
    let a = free_port_on([127, 0, 0, 2]);
    format!("[[target]]\nname = \"cfg\"\nlisten = [\"{a}\"]\ntier = \"1g\"\n")
}

/// The target named `name` in a list answer.
fn find<'a>(list: &'a Value, key: &str, value: &Value) -> Option<&'a Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|t| &t[key] == value)
}

/// An RPC NULL call to NFSv3 at `addr` is answered with SUCCESS.
fn nfs_null_answered(addr: SocketAddr) {
    let mut c = RpcClient::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.call_ok(v3::PROGRAM, v3::VERSION, 0, &[]);
}

/// Waits (bounded) until nothing accepts connections on `addr`.
fn refuses_connections(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(_) => return true,
            Ok(_) if Instant::now() > deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn the_openapi_document_names_exactly_the_routes_the_server_serves() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let doc: Value = serde_json::from_str(&text).expect("docs/openapi.json is not JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if methods.contains(&method.as_str()) {
                assert!(
                    op["responses"].is_object(),
                    "{method} {path} has no responses"
                );
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = nfs_server::ops::admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, served,
        "docs/openapi.json and nfs_server::ops::admin::ROUTES differ"
    );
    // The bearer scheme applies to every operation.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        json!({"type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]})
    );
    assert_eq!(doc["security"], json!([{"bearerAuth": []}]));
    // Every $ref resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(s)) => out.push(s),
                        _ => refs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let ptr = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(ptr).is_some(), "unresolved $ref {r}");
    }
}

#[test]
fn requests_without_the_token_or_with_a_wrong_one_are_refused_with_401() {
    let api = Api::start("");
    for path in ["/v1/status", "/v1/targets", "/v1/exports", "/nope"] {
        let r = request(api.admin, "GET", path, None, None);
        assert_eq!(r.status, 401, "GET {path} without a token: {r:?}");
        assert!(r.error().contains("token"), "{r:?}");
        let r = request(
            api.admin,
            "GET",
            path,
            Some("0123456789abcdef0123456789abcdef"),
            None,
        );
        assert_eq!(r.status, 401, "GET {path} with a wrong token: {r:?}");
        assert!(!r.error().is_empty());
    }
    // A change without the token changes nothing.
    let body = br#"{"path":"/sneaky","clients":[{"match":"*"}]}"#;
    let r = request(api.admin, "POST", "/v1/exports", Some("wrong"), Some(body));
    assert_eq!(r.status, 401, "{r:?}");
    let list = api.get("/v1/exports");
    assert!(find(list.body(), "path", &json!("/sneaky")).is_none());
    // The right token works.
    assert_eq!(api.get("/v1/status").status, 200);
}

#[test]
fn malformed_json_unknown_routes_wrong_methods_and_large_bodies_get_their_statuses() {
    let api = Api::start("");
    let t = Some(api.token.as_str());
    // Malformed JSON: 400 naming the problem.
    let r = request(api.admin, "POST", "/v1/targets", t, Some(b"{\"name\": "));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("JSON"), "{r:?}");
    // A missing field is named.
    let r = request(
        api.admin,
        "POST",
        "/v1/targets",
        t,
        Some(br#"{"name":"x","tier":"1g"}"#),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("listen"), "{r:?}");
    // An unknown field is named.
    let r = request(
        api.admin,
        "POST",
        "/v1/exports",
        t,
        Some(br#"{"path":"/x","clients":[{"match":"*"}],"colour":"red"}"#),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("colour"), "{r:?}");
    // Unknown route.
    for path in ["/v2/status", "/", "/v1/nothing"] {
        let r = api.get(path);
        assert_eq!(r.status, 404, "GET {path}: {r:?}");
        assert!(!r.error().is_empty());
    }
    // Wrong method on a known path.
    for (m, path) in [
        ("POST", "/v1/status"),
        ("DELETE", "/v1/targets"),
        ("PATCH", "/v1/exports"),
        ("PUT", "/v1/residency"),
    ] {
        let r = request(api.admin, m, path, t, Some(b"{}"));
        assert_eq!(r.status, 405, "{m} {path}: {r:?}");
        assert!(r.error().contains(m), "{r:?}");
    }
    // A body over 1 MiB: refused on the declared length, before it is read.
    let head = format!(
        "POST /v1/targets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        api.token,
        (1 << 20) + 1
    );
    let r = exchange(api.admin, head.as_bytes());
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.error().contains("1 MiB"), "{r:?}");
    // Exactly 1 MiB is read (and is then just bad JSON).
    let mut big = vec![b' '; 1 << 20];
    big[0] = b'[';
    let r = request(api.admin, "POST", "/v1/targets", t, Some(&big));
    assert_eq!(r.status, 400, "{r:?}");
    // The server is still fine.
    assert_eq!(api.get("/v1/status").status, 200);
}

#[test]
fn status_reports_version_connections_targets_nlm_and_throughput() {
    let api = Api::start(&cfg_target());
    let r = api.get("/v1/status");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.body();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert!(v["connections"].is_u64(), "{v}");
    assert!(v["clients"].is_u64(), "{v}");
    assert!(v["uptime_seconds"].is_u64(), "{v}");
    assert_eq!(v["store"], "nvme", "{v}");
    assert_eq!(v["exports"], 1, "{v}");
    let targets = v["targets"].as_array().expect("targets list");
    assert!(targets.iter().any(|t| t["name"] == "cfg"), "{v}");
    assert!(v["nlm"]["grace"].is_boolean(), "{v}");
    assert!(v["nlm"]["state"].is_u64(), "{v}");
    assert!(v["nlm"]["locks"].is_u64(), "{v}");
    assert!(v["throughput_bytes"]["read"].is_u64(), "{v}");
    assert!(v["throughput_bytes"]["write"].is_u64(), "{v}");
    // An open NFS connection and a write show up.
    let (mut c, root) = api.s.mounted("/");
    let f = c.create(&root, "tp").expect("create");
    c.write(&f, 0, &[7u8; 4096], StableHow::FileSync)
        .expect("write");
    let v = api.get("/v1/status").json.unwrap();
    assert!(v["connections"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["clients"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        v["throughput_bytes"]["write"].as_u64().unwrap() >= 4096,
        "{v}"
    );
}

#[test]
fn a_target_created_by_the_api_serves_nfs_can_be_retiered_and_is_refused_twice() {
    let api = Api::start(&cfg_target());
    let addr = free_port_on([127, 0, 0, 3]);
    assert_eq!(
        api.rate_metric("api", "total"),
        None,
        "no metric before the target exists"
    );
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "api", "listen": [addr.to_string()], "tier": {"read": "10MB/s"}}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let t = r.body();
    assert_eq!(t["name"], "api");
    assert_eq!(t["source"], "api");
    assert_eq!(t["listen"], json!([addr.to_string()]));
    assert_eq!(t["rate_bytes_per_second"]["read"], 10_000_000, "{t}");
    assert_eq!(t["rate_bytes_per_second"]["total"], 0, "{t}");

    let list = api.get("/v1/targets");
    assert_eq!(list.status, 200);
    let listed = find(list.body(), "name", &json!("api")).expect("api target listed");
    assert_eq!(listed["source"], "api");
    let cfg = find(list.body(), "name", &json!("cfg")).expect("cfg target listed");
    assert_eq!(cfg["source"], "config");
    assert_eq!(api.get("/v1/targets/api").body()["name"], "api");
    assert_eq!(api.get("/v1/targets/nope").status, 404);

    // The new listener serves NFS.
    nfs_null_answered(addr);

    // Retier: 1g is 125 MB/s total; /metrics follows.
    assert_eq!(api.rate_metric("api", "total"), Some(0.0));
    let r = api.send("PUT", "/v1/targets/api/tier", &json!({"tier": "1g"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body()["tier"], "1g");
    assert_eq!(r.body()["rate_bytes_per_second"]["total"], 125_000_000);
    assert_eq!(api.rate_metric("api", "total"), Some(125_000_000.0));
    assert_eq!(
        api.get("/v1/targets/api").body()["rate_bytes_per_second"]["total"],
        125_000_000
    );
    let r = api.send("PUT", "/v1/targets/nope/tier", &json!({"tier": "1g"}));
    assert_eq!(r.status, 404, "{r:?}");

    // An invalid tier, on create and on change.
    let r = api.send("PUT", "/v1/targets/api/tier", &json!({"tier": "3g"}));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("tier"), "{r:?}");
    let r = api.send(
        "PUT",
        "/v1/targets/api/tier",
        &json!({"tier": {"read": "fast"}}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let other = free_port_on([127, 0, 0, 3]);
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "bad", "listen": [other.to_string()], "tier": "3g"}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("tier"), "{r:?}");
    assert_eq!(api.get("/v1/targets/bad").status, 404);
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "bad", "listen": [], "tier": "1g"}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("listen"), "{r:?}");

    // A duplicate name: 409, on the same address and on another one; the first target stays.
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "api", "listen": [addr.to_string()], "tier": "1g"}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "api", "listen": [other.to_string()], "tier": "1g"}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    let r = api.get("/v1/targets/api");
    assert_eq!(
        r.status, 200,
        "a refused duplicate POST removed the existing target: {r:?}"
    );
    nfs_null_answered(addr);
    assert!(
        refuses_connections(other),
        "the refused duplicate's address {other} still accepts connections"
    );
}

#[test]
fn deleting_targets_stops_their_listeners_and_config_targets_cannot_be_deleted() {
    let api = Api::start(&cfg_target());
    let r = api.delete("/v1/targets/cfg");
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.error().contains("config"), "{r:?}");
    assert_eq!(api.get("/v1/targets/cfg").status, 200);

    let addr = free_port_on([127, 0, 0, 3]);
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "api", "listen": [addr.to_string()], "tier": "20g"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    nfs_null_answered(addr);

    let r = api.delete("/v1/targets/api");
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.text.is_empty(), "204 with a body: {r:?}");
    assert_eq!(api.get("/v1/targets/api").status, 404);
    let list = api.get("/v1/targets");
    assert!(
        find(list.body(), "name", &json!("api")).is_none(),
        "{list:?}"
    );
    assert!(
        refuses_connections(addr),
        "{addr} still accepts connections after the delete"
    );
    assert_eq!(api.delete("/v1/targets/api").status, 404);
}

#[test]
fn an_export_added_by_the_api_mounts_and_its_handles_go_stale_when_it_is_deleted() {
    let api = Api::start("");
    let exports = api.get("/v1/exports");
    let root = find(exports.body(), "path", &json!("/")).expect("default export");
    assert_eq!(root["source"], "config");
    let root_id = root["id"].as_u64().unwrap();

    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/proj", "clients": [{"match": "127.0.0.0/8", "squash": "none"}]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let e = r.body().clone();
    assert_eq!(e["path"], "/proj");
    assert_eq!(e["source"], "api");
    assert_eq!(
        e["clients"],
        json!([{"match": "127.0.0.0/8", "access": "rw", "squash": "none", "anonuid": 65534, "anongid": 65534}])
    );
    let id = e["id"].as_u64().expect("export id");
    let list = api.get("/v1/exports");
    assert_eq!(find(list.body(), "id", &json!(id)), Some(&e));

    // A second export of the same path: 409.
    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/proj", "clients": [{"match": "*"}]}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    // Invalid ones: 400 naming the field.
    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/a/../b", "clients": [{"match": "*"}]}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("path"), "{r:?}");
    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/q", "clients": [{"match": "10.0.0.0/40"}]}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("clients[0].match"), "{r:?}");

    // MOUNT works, and the handle is good.
    let (mut c, fh) = api.s.mounted("/proj");
    let f = c.create(&fh, "a").expect("create in /proj");
    c.getattr(&f).expect("getattr");

    let r = api.delete(&format!("/v1/exports/{id}"));
    assert_eq!(r.status, 204, "{r:?}");
    let list = api.get("/v1/exports");
    assert!(find(list.body(), "id", &json!(id)).is_none());
    assert_eq!(c.getattr(&fh).map(|_| ()), Err(nfsstat::STALE));
    assert_eq!(c.getattr(&f).map(|_| ()), Err(nfsstat::STALE));
    assert!(
        api.s.client().mnt("/proj").is_err(),
        "MNT of a deleted export"
    );

    assert_eq!(api.delete(&format!("/v1/exports/{id}")).status, 404);
    assert_eq!(api.delete("/v1/exports/notanumber").status, 400);
    let r = api.delete(&format!("/v1/exports/{root_id}"));
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.error().contains("config"), "{r:?}");
    api.s.mounted("/");
}

#[test]
fn without_the_metadata_log_changes_are_kept_in_admin_state_json_and_survive_a_restart() {
    let direct = "\n[cluster]\nmetadata = \"local\"\n";
    let mut api = Api::start(&format!("{}{direct}", cfg_target()));
    assert_eq!(api.get("/v1/status").body()["settings"]["kept_in"], "file");
    let addr = free_port_on([127, 0, 0, 3]);
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "api", "listen": [addr.to_string()], "tier": {"read": "10MB/s"}}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.send("PUT", "/v1/targets/cfg/tier", &json!({"tier": "40g"}));
    assert_eq!(r.status, 200, "{r:?}");
    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/kept", "id": 77, "clients": [{"match": "127.0.0.0/8", "access": "ro"}]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body()["id"], 77);
    assert!(api.s.data_dir().join("admin-state.json").exists());

    api.s.restart();
    assert_eq!(
        read_token(&api.s.data_dir()),
        api.token,
        "the token changed"
    );

    let t = api.get("/v1/targets/api");
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.body()["source"], "api");
    assert_eq!(t.body()["rate_bytes_per_second"]["read"], 10_000_000);
    nfs_null_answered(addr);
    let cfg = api.get("/v1/targets/cfg");
    assert_eq!(cfg.body()["tier"], "40g", "{cfg:?}");
    assert_eq!(cfg.body()["source"], "config");

    let list = api.get("/v1/exports");
    let e = find(list.body(), "id", &json!(77)).expect("export 77 after restart");
    assert_eq!(e["path"], "/kept");
    assert_eq!(e["source"], "api");
    assert_eq!(e["clients"][0]["access"], "ro");
    api.s.mounted("/kept");

    // A bad entry in the file stops the start, with the file named (no log: this node's own).
    let config_id =
        find(api.get("/v1/exports").body(), "source", &json!("config")).unwrap()["id"].clone();
    api.s.kill9();
    let file = api.s.data_dir().join("admin-state.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    doc["exports"][0]["id"] = config_id;
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = api.s.start_expecting_failure();
    assert!(
        err.contains("admin-state.json") && err.contains("config-file export"),
        "{err}"
    );
}

#[test]
fn residency_lists_the_extents_of_a_sparse_file() {
    const MIB: u64 = 1 << 20;
    let api = Api::start("");
    let (mut c, root) = api.s.mounted("/");
    let dir = c.mkdir(&root, "d").expect("mkdir");
    let f = c.create(&dir, "sparse").expect("create");
    let chunk = vec![0x5au8; 64 * 1024];
    for base in [0, 8 * MIB] {
        for i in 0..(MIB / chunk.len() as u64) {
            c.write(
                &f,
                base + i * chunk.len() as u64,
                &chunk,
                StableHow::Unstable,
            )
            .expect("write");
        }
    }
    c.commit(&f).expect("commit");

    let r = api.get("/v1/residency?path=/d/sparse");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.body();
    assert_eq!(v["path"], "/d/sparse");
    assert_eq!(v["size"], 9 * MIB);
    assert_eq!(v["store"], "nvme");
    assert!(v["inode"].is_u64(), "{v}");
    assert!(v["data_file"].is_string(), "{v}");
    let extents: Vec<(u64, u64)> = v["extents"]
        .as_array()
        .expect("extents")
        .iter()
        .map(|e| (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap()))
        .collect();
    let covered = |a: u64, b: u64| {
        // [a, b) lies in the union of the extents (which may be split).
        let mut at = a;
        let mut sorted = extents.clone();
        sorted.sort();
        for (o, l) in sorted {
            if o <= at && at < o + l {
                at = o + l;
            }
        }
        at >= b
    };
    assert!(covered(0, MIB), "first MiB not covered: {extents:?}");
    assert!(
        covered(8 * MIB, 9 * MIB),
        "MiB at 8 MiB not covered: {extents:?}"
    );
    assert!(
        !extents
            .iter()
            .any(|&(o, l)| o <= 4 * MIB && 4 * MIB < o + l),
        "the hole at 4 MiB is listed as data: {extents:?}"
    );

    // Percent-encoding is decoded.
    assert_eq!(api.get("/v1/residency?path=%2Fd%2Fsparse").status, 200);
    // A missing file, and no path at all.
    let r = api.get("/v1/residency?path=/d/missing");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(!r.error().is_empty());
    let r = api.get("/v1/residency");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("path"), "{r:?}");
    // A directory holds no data.
    let r = api.get("/v1/residency?path=/d");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(!r.error().is_empty());
}

#[test]
fn the_memory_store_reports_residency_without_a_data_file() {
    let api = Api::start_with("", true);
    let (mut c, root) = api.s.mounted("/");
    let f = c.create(&root, "m").expect("create");
    c.write(&f, 0, &[1u8; 8192], StableHow::FileSync)
        .expect("write");
    let r = api.get("/v1/residency?path=/m");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body()["store"], "memory");
    assert!(r.body()["data_file"].is_null(), "{r:?}");
    assert_eq!(api.get("/v1/status").body()["store"], "memory");
}

#[test]
fn a_target_refused_because_one_address_is_taken_leaves_no_listener_behind() {
    let api = Api::start(&cfg_target());
    let taken = api.get("/v1/targets/cfg").body()["listen"][0]
        .as_str()
        .unwrap()
        .to_string();
    let free = free_port_on([127, 0, 0, 4]);
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "half", "listen": [free.to_string(), taken], "tier": "1g"}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.error().contains("cannot listen"), "{r:?}");
    assert!(r.error().starts_with("listen: "), "names the field: {r:?}");
    assert_eq!(api.get("/v1/targets/half").status, 404);
    assert!(
        refuses_connections(free),
        "{free}, the free address of a refused target, still accepts connections"
    );
}

#[test]
fn with_the_metadata_log_changes_are_kept_in_the_log_not_in_a_file_and_survive_a_restart() {
    let log = "\n[cluster]\nmetadata = \"log\"\n";
    let mut api = Api::start(&format!("{}{log}", cfg_target()));
    let st = api.get("/v1/status");
    assert_eq!(st.body()["settings"]["kept_in"], "log", "{st:?}");
    assert_eq!(st.body()["settings"]["version"], 0, "{st:?}");
    let addr = free_port_on([127, 0, 0, 3]);
    let r = api.send(
        "POST",
        "/v1/targets",
        &json!({"name": "api", "listen": [addr.to_string()], "tier": "20g"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.send("PUT", "/v1/targets/cfg/tier", &json!({"tier": "40g"}));
    assert_eq!(r.status, 200, "{r:?}");
    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/logged", "id": 78, "clients": [{"match": "127.0.0.0/8"}]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let st = api.get("/v1/status");
    assert_eq!(
        st.body()["settings"]["version"],
        3,
        "one version per change: {st:?}"
    );
    assert!(
        !api.s.data_dir().join("admin-state.json").exists(),
        "a node with the metadata log wrote admin-state.json"
    );

    api.s.restart();
    let t = api.get("/v1/targets/api");
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.body()["tier"], "20g", "{t:?}");
    nfs_null_answered(addr);
    assert_eq!(api.get("/v1/targets/cfg").body()["tier"], "40g");
    let list = api.get("/v1/exports");
    assert!(find(list.body(), "id", &json!(78)).is_some(), "{list:?}");
    api.s.mounted("/logged");

    let r = api.delete("/v1/targets/api");
    assert_eq!(r.status, 204, "{r:?}");
    assert!(
        refuses_connections(addr),
        "the deleted target still listens"
    );
    let r = api.delete("/v1/exports/78");
    assert_eq!(r.status, 204, "{r:?}");
    api.s.restart();
    assert_eq!(api.get("/v1/targets/api").status, 404);
    let list = api.get("/v1/exports");
    assert!(find(list.body(), "id", &json!(78)).is_none(), "{list:?}");
    assert_eq!(api.get("/v1/status").body()["settings"]["version"], 5);
}

#[test]
fn a_node_moving_to_the_metadata_log_imports_its_admin_state_file_once() {
    let log = "\n[cluster]\nmetadata = \"log\"\n";
    let mut api = Api::start(&format!("{}{log}", cfg_target()));
    api.s.kill9();
    // What a run without the log left behind.
    let file = api.s.data_dir().join("admin-state.json");
    std::fs::write(&file, r#"{"tiers": {"cfg": "80g"}}"#).unwrap();
    api.s.restart();
    assert_eq!(api.get("/v1/targets/cfg").body()["tier"], "80g");
    assert_eq!(api.get("/v1/status").body()["settings"]["version"], 1);
    assert!(
        !file.exists(),
        "the imported file is still read at every start"
    );
    assert!(api.s.data_dir().join("admin-state.json.imported").exists());

    // A second file is not imported over the cluster's settings: it is set aside.
    std::fs::write(&file, r#"{"tiers": {"cfg": "1g"}}"#).unwrap();
    api.s.restart();
    assert_eq!(api.get("/v1/targets/cfg").body()["tier"], "80g");
    assert!(api.s.data_dir().join("admin-state.json.ignored").exists());
    assert!(api.s.log().contains("not imported"), "{}", api.s.log());
}

#[test]
fn an_export_s_replication_reaches_the_files_made_in_it_and_survives_a_restart() {
    let cfg = "\n[[export]]\npath = \"/\"\nreplication = 2\n[[export.clients]]\nmatch = \"*\"\nsquash = \"none\"\n\
               \n[cluster]\nmetadata = \"log\"\n";
    let mut api = Api::start(cfg);
    let list = api.get("/v1/exports");
    let root = find(list.body(), "path", &json!("/")).expect("the config export");
    assert_eq!(root["replication"], 2, "{list:?}");
    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/ckpt", "id": 91, "replication": 3,
                "clients": [{"match": "127.0.0.0/8", "squash": "none"}]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body()["replication"], 3, "{r:?}");
    let (mut c, ckpt) = api.s.mounted("/ckpt");
    c.create(&ckpt, "three").expect("create");
    let (mut c2, top) = api.s.mounted("/");
    c2.create(&top, "two").expect("create");
    let copies = |api: &Api, path: &str| {
        let r = api.get(&format!("/v1/residency?path={path}"));
        assert_eq!(r.status, 200, "{r:?}");
        r.body()["replication"].clone()
    };
    assert_eq!(copies(&api, "/ckpt/three"), 3);
    assert_eq!(copies(&api, "/two"), 2);

    // In place: files made from now on get the new factor, earlier ones keep theirs.
    let r = api.send(
        "PUT",
        "/v1/exports/91/replication",
        &json!({"replication": 1}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body()["replication"], 1, "{r:?}");
    c.create(&ckpt, "one").expect("create");
    assert_eq!(copies(&api, "/ckpt/one"), 1);
    assert_eq!(copies(&api, "/ckpt/three"), 3);

    // Bad input names the field; a config export changes in its file; unknown ids are 404.
    for bad in [
        json!({"replication": 4}),
        json!({"replication": 300}),
        json!({"replication": "2"}),
    ] {
        let r = api.send("PUT", "/v1/exports/91/replication", &bad);
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(r.error().starts_with("replication: "), "{bad}: {r:?}");
    }
    // The field is required: an empty body does not clear the factor.
    let r = api.send("PUT", "/v1/exports/91/replication", &json!({}));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("replication"), "{r:?}");
    for bad in [json!(300), json!("2"), json!(2.5)] {
        let r = api.send(
            "POST",
            "/v1/exports",
            &json!({"path": "/bad", "replication": bad, "clients": [{"match": "*"}]}),
        );
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(r.error().starts_with("replication: "), "{bad}: {r:?}");
    }
    let r = api.send(
        "POST",
        "/v1/exports",
        &json!({"path": "/bad", "replication": 0, "clients": [{"match": "*"}]}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("replication"), "{r:?}");
    let root_id = root["id"].clone();
    let r = api.send(
        "PUT",
        &format!("/v1/exports/{root_id}/replication"),
        &json!({"replication": 1}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        api.send(
            "PUT",
            "/v1/exports/12345/replication",
            &json!({"replication": 1})
        )
        .status,
        404
    );

    // No factor of its own again, kept across a restart.
    let r = api.send(
        "PUT",
        "/v1/exports/91/replication",
        &json!({"replication": null}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body()["replication"].is_null(), "{r:?}");
    api.s.restart();
    let list = api.get("/v1/exports");
    let ckpt_export = find(list.body(), "id", &json!(91)).expect("the API export");
    assert!(ckpt_export["replication"].is_null(), "{list:?}");
    let (mut c, ckpt) = api.s.mounted("/ckpt");
    c.create(&ckpt, "default").expect("create");
    // Without a factor of its own, the export's files take the one of the export above it.
    assert_eq!(copies(&api, "/ckpt/default"), 2);
    assert_eq!(copies(&api, "/ckpt/three"), 3);

    // A removed export's factor leaves its directory with it.
    let r = api.send(
        "PUT",
        "/v1/exports/91/replication",
        &json!({"replication": 1}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(api.delete("/v1/exports/91").status, 204);
    let (mut c, top) = api.s.mounted("/");
    let dir = c.lookup(&top, "ckpt").expect("the directory stays");
    c.create(&dir, "after").expect("create");
    assert_eq!(copies(&api, "/ckpt/after"), 2);
}
