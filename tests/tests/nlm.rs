//! NLM v4 against the real binary on loopback: two clients (two caller names) contend for
//! byte-range locks; a blocked lock is granted once the holder unlocks; a client's reboot
//! notice (SM_NOTIFY) releases its locks; after kill -9 and restart the grace period admits
//! only reclaims. The kernel-client version of these scenarios is tests/e2e/nlm-kclient.sh.

use bytes::Bytes;
use nfs_proto::nlm::{
    nlmproc, smproc, Nlm4Lock, NlmArgs, NLM_PROGRAM, NLM_VERSION, NSM_PROGRAM, NSM_VERSION,
};
use nfs_proto::v3::NfsFh3;
use nfs_proto::xdr::Writer;
use sluice_tests::{encode, RpcClient, Sluice};

const GRANTED: u32 = 0;
const DENIED: u32 = 1;
const BLOCKED: u32 = 3;
const DENIED_GRACE_PERIOD: u32 = 4;
const STALE_FH: u32 = 7;

fn nlm_lock(client: &str, fh: &NfsFh3, svid: u32, offset: u64, len: u64) -> Nlm4Lock {
    Nlm4Lock {
        caller_name: Bytes::from(client.to_string()),
        fh: fh.0.clone(),
        oh: Bytes::from(format!("{client}-owner")),
        svid,
        offset,
        len,
    }
}

fn lock(c: &mut RpcClient, l: &Nlm4Lock, exclusive: bool, block: bool, reclaim: bool) -> u32 {
    let args = NlmArgs::Lock {
        cookie: Bytes::from_static(b"c1"),
        block,
        exclusive,
        lock: l.clone(),
        reclaim,
        state: 1,
    };
    let mut r = c.call_ok(NLM_PROGRAM, NLM_VERSION, nlmproc::LOCK, &encode(&args));
    assert_eq!(&r.opaque(1024).unwrap()[..], b"c1", "cookie echoed");
    r.u32().unwrap()
}

fn unlock(c: &mut RpcClient, l: &Nlm4Lock) -> u32 {
    let args = NlmArgs::Unlock {
        cookie: Bytes::new(),
        lock: l.clone(),
    };
    let mut r = c.call_ok(NLM_PROGRAM, NLM_VERSION, nlmproc::UNLOCK, &encode(&args));
    r.opaque(1024).unwrap();
    r.u32().unwrap()
}

/// TEST: the status, and the holder's svid when denied.
fn test(c: &mut RpcClient, l: &Nlm4Lock, exclusive: bool) -> (u32, Option<u32>) {
    let args = NlmArgs::Test {
        cookie: Bytes::new(),
        exclusive,
        lock: l.clone(),
    };
    let mut r = c.call_ok(NLM_PROGRAM, NLM_VERSION, nlmproc::TEST, &encode(&args));
    r.opaque(1024).unwrap();
    let stat = r.u32().unwrap();
    let holder = (stat == DENIED).then(|| {
        r.bool().unwrap();
        r.u32().unwrap()
    });
    (stat, holder)
}

fn file(s: &Sluice, name: &str) -> (RpcClient, NfsFh3) {
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, name).expect("create");
    (c, fh)
}

#[test]
fn write_locks_of_two_clients_on_overlapping_ranges_conflict() {
    let s = Sluice::start_memory();
    let (mut c, fh) = file(&s, "f");
    let a = nlm_lock("node-a", &fh, 10, 0, 100);
    let b = nlm_lock("node-b", &fh, 20, 50, 100);
    assert_eq!(lock(&mut c, &a, true, false, false), GRANTED);
    assert_eq!(lock(&mut c, &b, true, false, false), DENIED);
    assert_eq!(test(&mut c, &b, true), (DENIED, Some(10)));
    // Past the end of a's range there is no conflict.
    let b2 = nlm_lock("node-b", &fh, 20, 100, 10);
    assert_eq!(lock(&mut c, &b2, true, false, false), GRANTED);
}

#[test]
fn read_locks_are_shared_and_exclude_writers() {
    let s = Sluice::start_memory();
    let (mut c, fh) = file(&s, "f");
    let a = nlm_lock("node-a", &fh, 1, 0, 0);
    let b = nlm_lock("node-b", &fh, 2, 0, 0);
    assert_eq!(lock(&mut c, &a, false, false, false), GRANTED);
    assert_eq!(lock(&mut c, &b, false, false, false), GRANTED);
    assert_eq!(test(&mut c, &b, true).0, DENIED);
    assert_eq!(unlock(&mut c, &a), GRANTED);
    assert_eq!(
        test(&mut c, &b, true).0,
        GRANTED,
        "only b's own read lock remains"
    );
}

#[test]
fn blocked_lock_is_granted_after_the_holder_unlocks() {
    let s = Sluice::start_memory();
    let (mut c, fh) = file(&s, "f");
    let a = nlm_lock("node-a", &fh, 1, 0, 0);
    let b = nlm_lock("node-b", &fh, 2, 0, 0);
    assert_eq!(lock(&mut c, &a, true, true, false), GRANTED);
    assert_eq!(lock(&mut c, &b, true, true, false), BLOCKED);
    assert_eq!(unlock(&mut c, &a), GRANTED);
    // The GRANTED callback cannot reach a lockd here (there is none on loopback); the client's
    // retransmitted LOCK finds the lock already granted to it.
    assert_eq!(lock(&mut c, &b, true, true, false), GRANTED);
    assert_eq!(test(&mut c, &a, true), (DENIED, Some(2)));
}

#[test]
fn sm_notify_from_a_rebooted_client_releases_its_locks() {
    let s = Sluice::start_memory();
    let (mut c, fh) = file(&s, "f");
    let a = nlm_lock("node-a", &fh, 1, 0, 0);
    let b = nlm_lock("node-b", &fh, 2, 0, 0);
    assert_eq!(lock(&mut c, &a, true, false, false), GRANTED);
    let mut w = Writer::new();
    nfs_proto::nlm::encode_notify(&mut w, b"node-a", 3);
    c.call_ok(NSM_PROGRAM, NSM_VERSION, smproc::NOTIFY, &w.into_bytes());
    assert_eq!(lock(&mut c, &b, true, false, false), GRANTED);
}

#[test]
fn free_all_releases_every_lock_of_a_client() {
    let s = Sluice::start_memory();
    let (mut c, fh) = file(&s, "f");
    let a = nlm_lock("node-a", &fh, 1, 0, 10);
    let a2 = nlm_lock("node-a", &fh, 7, 20, 10);
    assert_eq!(lock(&mut c, &a, true, false, false), GRANTED);
    assert_eq!(lock(&mut c, &a2, true, false, false), GRANTED);
    let args = NlmArgs::FreeAll {
        name: Bytes::from_static(b"node-a"),
        state: 5,
    };
    c.call_ok(NLM_PROGRAM, NLM_VERSION, nlmproc::FREE_ALL, &encode(&args));
    let b = nlm_lock("node-b", &fh, 2, 0, 0);
    assert_eq!(lock(&mut c, &b, true, false, false), GRANTED);
}

#[test]
fn lock_on_a_forged_handle_is_stale() {
    let s = Sluice::start_memory();
    let (mut c, fh) = file(&s, "f");
    let mut bad = fh.0.to_vec();
    bad[30] ^= 1;
    let l = nlm_lock("node-a", &NfsFh3(Bytes::from(bad)), 1, 0, 0);
    assert_eq!(lock(&mut c, &l, true, false, false), STALE_FH);
}

/// The process half: a restart starts the grace period from the saved monitor list. What
/// happens when it ends (reclaims refused, reclaimed locks kept) is tested on a virtual clock
/// in `nfs-server` (`an_nlm_reclaim_is_accepted_in_grace_and_refused_after_it`), not by sleeping.
#[test]
fn after_a_restart_only_reclaims_are_accepted_during_grace() {
    let mut s = Sluice::start_config("[nlm]\ngrace_seconds = 60\n");
    let (mut c, fh) = file(&s, "f");
    let a = nlm_lock("node-a", &fh, 1, 0, 0);
    assert_eq!(lock(&mut c, &a, true, false, false), GRANTED);
    s.restart();
    let mut c = s.client();
    let b = nlm_lock("node-b", &fh, 2, 0, 0);
    assert_eq!(lock(&mut c, &b, true, false, false), DENIED_GRACE_PERIOD);
    assert_eq!(
        lock(&mut c, &a, true, false, true),
        GRANTED,
        "reclaim in grace"
    );
    assert_eq!(
        lock(&mut c, &b, true, false, false),
        DENIED_GRACE_PERIOD,
        "still in grace"
    );
}

#[test]
fn a_restart_with_no_lock_holders_has_no_grace_period() {
    let mut s = Sluice::start_config("[nlm]\ngrace_seconds = 30\n");
    let (_, fh) = file(&s, "f");
    s.restart();
    let mut c = s.client();
    let b = nlm_lock("node-b", &fh, 2, 0, 0);
    assert_eq!(lock(&mut c, &b, true, false, false), GRANTED);
}

#[test]
fn a_client_that_cannot_be_notified_causes_no_grace_period_at_the_next_restart() {
    let mut s = Sluice::start_config("[nlm]\ngrace_seconds = 30\n");
    let (mut c, fh) = file(&s, "f");
    let a = nlm_lock("node-a", &fh, 1, 0, 0);
    assert_eq!(lock(&mut c, &a, true, false, false), GRANTED);
    s.restart();
    // node-a has no statd on loopback: three SM_NOTIFY attempts two seconds apart, then it is
    // dropped from the monitor list, and the list is saved (the log line before the save is
    // not enough: a kill between the two leaves node-a in the saved list).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !s
        .log()
        .contains("NSM monitor list saved after the notifications")
    {
        assert!(std::time::Instant::now() < deadline, "{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    s.restart();
    let mut c = s.client();
    let b = nlm_lock("node-b", &fh, 2, 0, 0);
    assert_eq!(
        lock(&mut c, &b, true, false, false),
        GRANTED,
        "no grace period"
    );
}
