//! The `sluice` CLI against a running server: an operator creates a target, changes its tier,
//! sees it in `status`, adds and removes an export, all through the admin API, with tables for
//! people and `--json` for scripts.

use sluice_tests::{free_port, run_sluice, Sluice};

struct Cli {
    api: String,
    token_file: String,
}

impl Cli {
    fn new(s: &Sluice, admin_port: u16) -> Cli {
        Cli {
            api: format!("http://127.0.0.1:{admin_port}"),
            token_file: s.data_dir().join("admin.token").display().to_string(),
        }
    }

    /// Runs `sluice --api .. --token-file .. ARGS`; returns (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["--api", &self.api, "--token-file", &self.token_file];
        all.extend_from_slice(args);
        run_sluice(&all)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "sluice {args:?} failed: {err}");
        out
    }
}

fn start() -> (Sluice, Cli) {
    let admin = free_port();
    let s = Sluice::start_config(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:{admin}\"\nmetrics_listen = \"127.0.0.1:{}\"\n",
        free_port()
    ));
    let cli = Cli::new(&s, admin);
    (s, cli)
}

#[test]
fn an_operator_creates_a_target_changes_its_tier_and_sees_it_in_status() {
    let (_s, cli) = start();
    let addr = format!("127.0.0.2:{}", free_port());
    cli.ok(&[
        "target", "create", "train", "--listen", &addr, "--tier", "20g",
    ]);
    let list = cli.ok(&["target", "list"]);
    assert!(
        list.contains("train") && list.contains("2.5 GB/s"),
        "{list}"
    );
    cli.ok(&["target", "set-tier", "train", r#"{"read":"40MB/s"}"#]);
    let status = cli.ok(&["status"]);
    assert!(
        status.contains("train") && status.contains("40.0 MB/s"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["--json", "target", "show", "train"])).unwrap();
    assert_eq!(json["rate_bytes_per_second"]["read"], 40_000_000);
    cli.ok(&["target", "delete", "train"]);
    assert!(!cli.ok(&["target", "list"]).contains("train"));
}

#[test]
fn an_operator_adds_and_removes_an_export() {
    let (s, cli) = start();
    cli.ok(&[
        "export",
        "add",
        "/proj",
        "--client",
        "127.0.0.0/8:rw:none",
        "--id",
        "77",
    ]);
    assert!(cli.ok(&["export", "list"]).contains("/proj"));
    let (_c, _root) = s.mounted("/proj");
    cli.ok(&["export", "remove", "77"]);
    assert!(!cli.ok(&["export", "list"]).contains("/proj"));
}

#[test]
fn a_wrong_token_is_refused_with_a_message_that_says_where_the_token_comes_from() {
    let (_s, cli) = start();
    let (ok, _, err) = cli.run(&["--token", "wrong", "status"]);
    assert!(!ok);
    assert!(err.contains("401") && err.contains("token"), "{err}");
}

#[test]
fn an_unreachable_api_says_what_to_check() {
    let (ok, _, err) = run_sluice(&[
        "--api",
        &format!("http://127.0.0.1:{}", free_port()),
        "--token",
        "x",
        "status",
    ]);
    assert!(!ok);
    assert!(err.contains("is `sluice serve` running"), "{err}");
}

#[test]
fn residency_of_a_written_file_shows_its_extents() {
    let (s, cli) = start();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "f").unwrap();
    c.write(&fh, 0, &[1u8; 65536], nfs_proto::v3::StableHow::FileSync)
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["--json", "residency", "/f"])).unwrap();
    assert_eq!(json["store"], "nvme");
    assert_eq!(json["extents"][0]["offset"], 0);
}

/// A self-signed certificate for 127.0.0.1 (and another one, to play the wrong CA).
fn self_signed(dir: &std::path::Path, name: &str) -> (String, String) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=sluice-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // An end-entity certificate (webpki refuses a CA certificate as a server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian: openssl) makes the test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn the_admin_api_over_tls_answers_the_cli_with_the_right_ca_only() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path(), "server");
    let (other, _) = self_signed(certs.path(), "other");
    let admin = free_port();
    let s = Sluice::start_config(&format!(
        "[server]\nadmin_listen = \"127.0.0.1:{admin}\"\nmetrics_listen = \"127.0.0.1:{}\"\n\
         admin_tls_cert = \"{cert}\"\nadmin_tls_key = \"{key}\"\n",
        free_port()
    ));
    let https = Cli {
        api: format!("https://127.0.0.1:{admin}"),
        token_file: s.data_dir().join("admin.token").display().to_string(),
    };
    let status = https.ok(&["--ca", &cert, "status"]);
    assert!(status.contains("node"), "{status}");
    let (ok, _, err) = https.run(&["status"]);
    assert!(!ok && err.contains("--ca"), "no CA given: {err}");
    let (ok, _, err) = https.run(&["--ca", &other, "status"]);
    assert!(
        !ok && err.to_lowercase().contains("certificate"),
        "wrong CA: {err}"
    );
    let plain = Cli::new(&s, admin);
    let (ok, _, err) = plain.run(&["status"]);
    assert!(!ok, "plain HTTP to the TLS port must fail: {err}");
}

#[test]
fn a_tls_certificate_without_its_key_is_refused_at_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[server]\nadmin_tls_cert = \"/etc/ssl/x.pem\"\n").unwrap();
    let (ok, out, err) = run_sluice(&["config", "check", f.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(err.contains("admin_tls_key"), "{err}");
}
