//! The Prometheus endpoint of the real binary: after a few NFS calls, `GET /metrics` on
//! `[server] metrics_listen` answers 200 with OpenMetrics text whose families include the RPC
//! counters, the latency histogram and the open-connection gauge, and counts the WRITE we made.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nfs_proto::v3::StableHow;
use sluice_tests::{free_port, Sluice, IO_TIMEOUT};

/// One sample of an exposition: name, labels in wire order, value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every non-comment line as `name{k="v",...} value` or `name value`; panics on any
/// other shape, since a line Prometheus cannot parse is a bug of the endpoint.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {l}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {l}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("no closing brace: {l}"));
                    // Sluice's label values (program/procedure/status names, targets,
                    // directions, bucket bounds) contain no `,` or `"`.
                    let labels = body
                        .split(',')
                        .map(|kv| {
                            let (k, v) = kv
                                .split_once('=')
                                .unwrap_or_else(|| panic!("bad label {kv:?}: {l}"));
                            let v = v
                                .strip_prefix('"')
                                .and_then(|v| v.strip_suffix('"'))
                                .unwrap_or_else(|| panic!("unquoted label value: {l}"));
                            (k.to_string(), v.to_string())
                        })
                        .collect();
                    (name, labels)
                }
            };
            Sample {
                name: name.to_string(),
                labels,
                value,
            }
        })
        .collect()
}

/// `GET path` over a plain TcpStream; returns (status line, headers, body). Retries the
/// connect for a few seconds in case the metrics listener comes up after the NFS one.
fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("metrics connect: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("connect to metrics on {addr}: {e}"),
        }
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("the endpoint closes after its response");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

#[test]
fn metrics_endpoint_counts_the_nfs_calls_a_client_made() {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let s = Sluice::start_config(&format!("[server]\nmetrics_listen = \"{metrics}\"\n"));

    let (mut c, root) = s.mounted("/");
    c.getattr(&root).expect("GETATTR of the root");
    let fh = c.create(&root, "counted").expect("CREATE");
    let res = c
        .write(&fh, 0, b"metrics", StableHow::FileSync)
        .expect("WRITE");
    assert_eq!(res.count, 7);
    let (data, _eof) = c.read(&fh, 0, 64).expect("READ");
    assert_eq!(&data[..], b"metrics");

    let (status, headers, body) = http_get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text")
            || headers
                .to_ascii_lowercase()
                .contains("content-type: text/plain"),
        "{headers}"
    );

    let samples = parse(&body);
    for family in [
        "sluice_rpc_calls_total",
        "sluice_rpc_latency_seconds",
        "sluice_rpc_phase_seconds",
        "sluice_runtime",
        "sluice_connections_open",
        "sluice_nfs4",
    ] {
        // A histogram's samples are <family>_bucket/_sum/_count.
        assert!(
            samples
                .iter()
                .any(|x| x.name == family || x.name.starts_with(&format!("{family}_"))),
            "family {family} missing:\n{body}"
        );
    }

    let writes_ok: f64 = samples
        .iter()
        .filter(|x| {
            x.name == "sluice_rpc_calls_total"
                && x.label("program") == Some("nfs3")
                && x.label("procedure") == Some("WRITE")
                && x.label("status") == Some("OK")
        })
        .map(|x| x.value)
        .sum();
    assert!(writes_ok >= 1.0, "no successful WRITE counted:\n{body}");

    let jukebox: Vec<&Sample> = samples
        .iter()
        .filter(|x| x.label("status") == Some("JUKEBOX"))
        .collect();
    assert!(
        jukebox.is_empty(),
        "an unloaded server answered JUKEBOX:\n{body}"
    );

    let (status, _, _) = http_get(metrics, "/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}
