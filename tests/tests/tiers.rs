//! Mount targets with bandwidth tiers, against the real binary on loopback. A target listens on
//! 127.0.0.2 with a scaled tier (tens of MB/s, which two cores can saturate); clients connect from
//! 127.0.0.3 and 127.0.0.4 to play two hosts. Checked: the cap holds over a window after the
//! first second, two hosts share fairly even when one has 16 connections and the other one, a
//! tier change through SIGHUP applies within a second without dropping connections, and
//! nothing is ever answered JUKEBOX. Tolerances are wider than bench/RESULTS.md's figures
//! because CI machines are noisy.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nfs_proto::v3::{NfsFh3, StableHow};
use sluice_tests::{free_port, RpcClient, Sluice};

const MB: f64 = 1e6;
const FILE_MIB: u64 = 16;

fn config(target: SocketAddr, tier: &str) -> String {
    format!("[[target]]\nname = \"t1\"\nlisten = [\"{target}\"]\ntier = {tier}\n")
}

/// The server's /metrics text (the config sets `metrics_listen`).
fn scrape(metrics: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(metrics).expect("connect to /metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A server with target "t1" on 127.0.0.2 and a 16 MiB file written through the (unlimited)
/// default target.
fn setup(tier: &str) -> (Sluice, SocketAddr, NfsFh3) {
    let target = SocketAddr::from(([127, 0, 0, 2], free_port()));
    setup_with(target, &config(target, tier))
}

fn setup_with(target: SocketAddr, toml: &str) -> (Sluice, SocketAddr, NfsFh3) {
    let s = Sluice::start_config(toml);
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "data").expect("create");
    let chunk = vec![7u8; 1 << 20];
    for i in 0..FILE_MIB {
        c.write(&fh, i << 20, &chunk, StableHow::Unstable)
            .expect("write");
    }
    (s, target, fh)
}

/// Completed 1 MiB READs: (when, which host).
type Log = Arc<Mutex<Vec<(Instant, usize)>>>;

/// `conns` connections from `source` reading 1 MiB at a time until `until`.
fn readers(
    host: usize,
    source: IpAddr,
    target: SocketAddr,
    fh: &NfsFh3,
    conns: usize,
    until: Instant,
    log: &Log,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..conns)
        .map(|i| {
            let (fh, log) = (fh.clone(), log.clone());
            std::thread::spawn(move || {
                let mut c = RpcClient::connect_from(source, target).expect("connect");
                let mut n = i as u64;
                while Instant::now() < until {
                    let (data, _) = c.read(&fh, (n % FILE_MIB) << 20, 1 << 20).expect("read");
                    assert_eq!(data.len(), 1 << 20);
                    log.lock().unwrap().push((Instant::now(), host));
                    n += 1;
                }
            })
        })
        .collect()
}

/// Bytes per second of `host` (or every host) in [from, to).
fn rate(log: &Log, host: Option<usize>, from: Instant, to: Instant) -> f64 {
    let n = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, h)| *t >= from && *t < to && host.is_none_or(|x| x == *h))
        .count();
    n as f64 * (1 << 20) as f64 / (to - from).as_secs_f64()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[test]
fn the_read_cap_of_a_target_holds_after_the_first_second() {
    let (_s, target, fh) = setup("{ read = \"30MB/s\" }");
    let log = Log::default();
    let start = Instant::now();
    let until = start + Duration::from_secs(6);
    for h in readers(0, ip(3), target, &fh, 4, until, &log) {
        h.join().unwrap();
    }
    let r = rate(&log, None, start + Duration::from_secs(1), until);
    eprintln!("cap: tier 30 MB/s, measured {:.2} MB/s over 5 s", r / MB);
    assert!((r / (30.0 * MB) - 1.0).abs() < 0.10, "{:.1} MB/s", r / MB);
}

#[test]
fn a_host_with_sixteen_connections_gets_the_same_share_as_a_host_with_one() {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let target = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let toml = format!(
        "[server]\nmetrics_listen = \"{metrics}\"\n{}",
        config(target, "{ read = \"40MB/s\" }")
    );
    let (_s, target, fh) = setup_with(target, &toml);
    let log = Log::default();
    let start = Instant::now();
    let until = start + Duration::from_secs(6);
    let mut hs = readers(0, ip(3), target, &fh, 16, until, &log);
    hs.extend(readers(1, ip(4), target, &fh, 1, until, &log));
    for h in hs {
        h.join().unwrap();
    }
    let from = start + Duration::from_secs(1);
    let (a, b) = (
        rate(&log, Some(0), from, until),
        rate(&log, Some(1), from, until),
    );
    let jain = (a + b).powi(2) / (2.0 * (a * a + b * b));
    eprintln!(
        "fairness: 16 conns {:.2} MB/s, 1 conn {:.2} MB/s, Jain {jain:.4}",
        a / MB,
        b / MB
    );
    assert!(
        jain >= 0.95,
        "Jain {jain:.3}: {:.1} vs {:.1} MB/s",
        a / MB,
        b / MB
    );
    assert!(
        ((a + b) / (40.0 * MB) - 1.0).abs() < 0.10,
        "total {:.1} MB/s",
        (a + b) / MB
    );
    // Pacing delays, never refuses: the server counts no JUKEBOX reply, and the delays it
    // applied are on record.
    let text = scrape(metrics);
    assert!(!text.contains("JUKEBOX"), "{text}");
    let delays = "sluice_target_throttle_delay_seconds_count{target=\"t1\",direction=\"read\"}";
    assert!(text.contains(delays), "{text}");
}

#[test]
fn a_tier_change_by_sighup_applies_within_a_second_without_reconnecting() {
    let (mut s, target, fh) = setup("{ read = \"20MB/s\" }");
    let log = Log::default();
    let start = Instant::now();
    let until = start + Duration::from_secs(7);
    let hs = readers(0, ip(3), target, &fh, 4, until, &log);
    std::thread::sleep(Duration::from_secs(3));
    let changed = Instant::now();
    s.reload_config(&config(target, "{ read = \"40MB/s\" }"));
    for h in hs {
        h.join().unwrap();
    }
    let before = rate(&log, None, start + Duration::from_secs(1), changed);
    let after = rate(&log, None, changed + Duration::from_secs(1), until);
    let first_second = rate(
        &log,
        None,
        changed + Duration::from_millis(100),
        changed + Duration::from_millis(1100),
    );
    eprintln!(
        "tier change 20 -> 40 MB/s: before {:.2}, first second after {:.2}, then {:.2} MB/s",
        before / MB,
        first_second / MB,
        after / MB
    );
    assert!(
        (before / (20.0 * MB) - 1.0).abs() < 0.15,
        "before {:.1} MB/s",
        before / MB
    );
    assert!(
        (after / (40.0 * MB) - 1.0).abs() < 0.15,
        "after {:.1} MB/s",
        after / MB
    );
    assert!(s.log().contains("tier changed"), "{}", s.log());
}

#[test]
fn connections_to_other_addresses_are_not_paced() {
    let (s, _target, fh) = setup("{ read = \"5MB/s\" }");
    let mut c = s.client();
    let start = Instant::now();
    for i in 0..32 {
        c.read(&fh, (i % FILE_MIB) << 20, 1 << 20).expect("read");
    }
    // 32 MiB at 5 MB/s would take 6 s; the default target is unlimited.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
