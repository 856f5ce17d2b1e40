//! Exports and client rules: who may mount what, read-only exports, unforgeable handles,
//! identity squashing, rules re-checked on every call, and `sluice check-config` errors that
//! name the offending field.

use nfs_proto::rpc::ReplyHeader;
use nfs_proto::v3::{self, Nfs3Call, NfsFh3, Sattr3, StableHow};
use sluice_tests::{encode, nfsstat, parse_reply, run_sluice, Auth, RpcClient, Sluice};

const MNT3ERR_NOENT: u32 = 2;
const MNT3ERR_ACCES: u32 = 13;
const AUTH_TOOWEAK: u32 = 5;

const RO_A_AND_REMOTE_B: &str = r#"
[[export]]
path = "/a"
[[export.clients]]
match = "127.0.0.1/32"
access = "ro"

[[export]]
path = "/b"
[[export.clients]]
match = "10.0.0.0/8"
"#;

#[test]
fn mount_from_outside_every_rule_is_mnt3err_acces() {
    let s = Sluice::start_config(
        r#"
        [[export]]
        path = "/"
        [[export.clients]]
        match = "10.0.0.0/8"
        "#,
    );
    let mut c = s.client();
    assert_eq!(c.mnt("/"), Err(MNT3ERR_ACCES));
    // Also on the MOUNT port.
    let mut m = RpcClient::connect(s.mount).unwrap();
    assert_eq!(m.mnt("/"), Err(MNT3ERR_ACCES));
}

#[test]
fn mount_of_a_path_that_is_not_exported_is_mnt3err_noent() {
    let s = Sluice::start_config(RO_A_AND_REMOTE_B);
    let mut c = s.client();
    assert_eq!(c.mnt("/c"), Err(MNT3ERR_NOENT));
    assert_eq!(c.mnt("/b"), Err(MNT3ERR_ACCES));
}

#[test]
fn read_only_export_allows_reads_and_refuses_changes_with_rofs() {
    let s = Sluice::start_config(RO_A_AND_REMOTE_B);
    let mut c = s.client();
    let a = c.mnt("/a").unwrap();
    let attr = c.getattr(&a).unwrap();
    assert_eq!(attr.ftype, 2);
    assert_eq!(c.list_dir(&a, 4096).unwrap().len(), 2, ". and ..");
    assert_eq!(c.create(&a, "f"), Err(nfsstat::ROFS));
    assert_eq!(c.mkdir(&a, "d"), Err(nfsstat::ROFS));
    assert_eq!(c.remove(&a, "x"), Err(nfsstat::ROFS));
    assert_eq!(
        c.write(&a, 0, b"x", StableHow::FileSync).map(|_| ()),
        Err(nfsstat::ROFS)
    );
    assert_eq!(
        c.setattr(
            &a,
            Sattr3 {
                mode: Some(0o777),
                ..Sattr3::default()
            }
        ),
        Err(nfsstat::ROFS)
    );
}

#[test]
fn forged_handles_are_badhandle() {
    let s = Sluice::start_config(RO_A_AND_REMOTE_B);
    let mut c = s.client();
    let a = c.mnt("/a").unwrap();
    assert_eq!(a.0.len(), 40);
    // Every byte matters: version, reserved, export id, inode, generation and MAC.
    for i in [0usize, 2, 7, 12, 20, 30, 39] {
        let mut b = a.0.to_vec();
        b[i] ^= 0x01;
        let forged = NfsFh3(b.into());
        assert_eq!(
            c.getattr(&forged),
            Err(nfsstat::BADHANDLE),
            "handle with byte {i} flipped"
        );
    }
    // Wrong lengths.
    for len in [0usize, 8, 39] {
        let short = NfsFh3(a.0.slice(..len));
        assert_eq!(
            c.getattr(&short),
            Err(nfsstat::BADHANDLE),
            "{len}-byte handle"
        );
    }
    // The export of /b cannot be reached by rewriting the export id.
    let mut b = a.0.to_vec();
    b[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    assert_eq!(c.getattr(&NfsFh3(b.into())), Err(nfsstat::BADHANDLE));
}

#[test]
fn handle_stops_working_when_the_rules_no_longer_match_the_client() {
    let mut s = Sluice::start_config(RO_A_AND_REMOTE_B);
    let mut c = s.client();
    let a = c.mnt("/a").unwrap();
    c.getattr(&a).unwrap();
    drop(c);
    s.set_config(&RO_A_AND_REMOTE_B.replace("127.0.0.1/32", "10.1.0.0/16"));
    s.restart();
    let mut c = s.client();
    let rec = c
        .call_xid(
            77,
            v3::PROGRAM,
            3,
            v3::proc3::GETATTR,
            &encode(&Nfs3Call::Getattr(a.clone())),
        )
        .unwrap();
    let (h, _) = parse_reply(rec);
    assert_eq!(
        h,
        ReplyHeader::AuthError {
            xid: 77,
            stat: AUTH_TOOWEAK
        }
    );
}

const SQUASH: &str = r#"
[[export]]
path = "/"
[[export.clients]]
match = "127.0.0.1"
squash = "none"

[[export]]
path = "/pub"
[[export.clients]]
match = "127.0.0.0/8"
squash = "root"

[[export]]
path = "/all"
[[export.clients]]
match = "*"
squash = "all"
anonuid = 4242
anongid = 4243
"#;

/// Starts the squash config and opens /pub and /all to everybody (as unsquashed root via /).
fn squash_server() -> Sluice {
    let s = Sluice::start_config(SQUASH);
    let (mut c, root) = s.mounted("/");
    for d in ["pub", "all"] {
        let fh = c.lookup(&root, d).unwrap();
        let open = Sattr3 {
            mode: Some(0o777),
            ..Sattr3::default()
        };
        c.setattr(&fh, open).unwrap();
    }
    s
}

fn owner_of_new_file(s: &Sluice, export: &str, auth: Auth, name: &str) -> (u32, u32) {
    let mut c = RpcClient::connect(s.nfs).unwrap().with_auth(auth);
    let dir = c.mnt(export).unwrap();
    let fh = c.create(&dir, name).unwrap();
    let a = c.getattr(&fh).unwrap();
    (a.uid, a.gid)
}

#[test]
fn root_squash_makes_root_files_owned_by_nobody() {
    let s = squash_server();
    assert_eq!(
        owner_of_new_file(&s, "/pub", Auth::root(), "by-root"),
        (65534, 65534)
    );
    assert_eq!(
        owner_of_new_file(&s, "/pub", Auth::user(1000, 100), "by-user"),
        (1000, 100),
        "root squash leaves other users alone"
    );
}

#[test]
fn no_root_squash_keeps_root() {
    let s = squash_server();
    assert_eq!(
        owner_of_new_file(&s, "/", Auth::root(), "root-file"),
        (0, 0)
    );
}

#[test]
fn auth_none_is_anonymous_whatever_the_squash() {
    let s = squash_server();
    assert_eq!(
        owner_of_new_file(&s, "/pub", Auth::None, "anon-file"),
        (65534, 65534)
    );
}

#[test]
fn all_squash_maps_every_user_to_anonuid() {
    let s = squash_server();
    assert_eq!(
        owner_of_new_file(&s, "/all", Auth::user(1000, 1000), "u"),
        (4242, 4243)
    );
    assert_eq!(
        owner_of_new_file(&s, "/all", Auth::root(), "r"),
        (4242, 4243)
    );
}

#[test]
fn check_config_rejects_bad_configs_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nlistn = []\n", "listn"),
        (
            "[[export]]\npath = \"/x\"\n[[export.clients]]\nmatch = \"10.0.0.0/33\"\n",
            "export[0].clients[0].match",
        ),
        (
            "[[export]]\npath = \"/x\"\n[[export.clients]]\nmatch = \"*\"\naccess = \"rx\"\n",
            "access",
        ),
        ("[[export]]\npath = \"relative\"\n", "export[0].path"),
        ("[server]\nlisten = []\n", "server.listen"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let (ok, _out, err) = run_sluice(&["check-config", p.to_str().unwrap()]);
        assert!(!ok, "check-config accepted {text:?}");
        assert!(
            err.contains(field),
            "error for {text:?} should name {field}: {err}"
        );
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, SQUASH).unwrap();
    let (ok, out, err) = run_sluice(&["check-config", good.to_str().unwrap()]);
    assert!(ok, "good config refused: {err}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn lookup_of_dotdot_at_an_export_root_stays_inside_the_export() {
    let s = Sluice::start_config(RO_A_AND_REMOTE_B);
    let mut c = s.client();
    let a = c.mnt("/a").unwrap();
    assert_eq!(c.lookup(&a, "..").unwrap(), a);
    let dotdot = c
        .list_dir(&a, 4096)
        .unwrap()
        .into_iter()
        .find(|e| e.name == "..")
        .unwrap();
    assert_eq!(dotdot.fileid, c.getattr(&a).unwrap().fileid);
}

#[test]
fn a_mount_target_serves_only_its_exports() {
    let target = std::net::SocketAddr::from(([127, 0, 0, 2], sluice_tests::free_port()));
    let s = Sluice::start_config(&format!(
        r#"
        [[export]]
        path = "/a"
        [[export.clients]]
        match = "*"
        [[export]]
        path = "/b"
        [[export.clients]]
        match = "*"
        [[target]]
        name = "only-b"
        listen = ["{target}"]
        tier = "unlimited"
        exports = ["/b"]
        "#
    ));
    // Through the server's own address every export is there.
    let mut c = s.client();
    let a = c.mnt("/a").expect("/a through the default target");
    assert!(c.mnt("/b").is_ok());
    // Through the target: /b mounts, /a is as if not exported, and /a's handle is stale.
    let mut t = RpcClient::connect(target).unwrap();
    assert_eq!(t.mnt("/a"), Err(MNT3ERR_NOENT));
    let b = t.mnt("/b").expect("/b through its target");
    assert!(t.getattr(&b).is_ok());
    assert_eq!(t.getattr(&a).map(|_| ()), Err(nfsstat::STALE));
    assert!(
        c.getattr(&a).is_ok(),
        "still fine through the default target"
    );
}
