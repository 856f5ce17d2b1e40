//! Connection limits against the real binary: a client that dribbles a record, an idle
//! connection, and connections past the cap are all closed, while well-behaved clients keep
//! being served. The full attack suite is `sluice-hostile` (tests/HOSTILE.md).

use std::io::Read;
use std::time::{Duration, Instant};

use sluice_tests::{RpcClient, Sluice};

const LIMITS: &str =
    "[server]\nrecord_timeout_seconds = 1\nidle_timeout_seconds = 2\nconnections_max = 4\n";

/// True when the server closes the connection within `within`: a read sees EOF or a reset,
/// not a timeout.
fn closed_within(c: &mut RpcClient, within: Duration) -> bool {
    let s = c.stream();
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn null_works(c: &mut RpcClient) -> bool {
    c.call_xid(7, 100003, 3, 0, &[]).is_ok()
}

#[test]
fn a_record_that_dribbles_in_too_slowly_is_closed() {
    let s = Sluice::start_config(LIMITS);
    let mut c = s.client();
    // A record mark for 100 bytes, then only 10 of them.
    c.send_raw(&(0x8000_0000u32 | 100).to_be_bytes()).unwrap();
    c.send_raw(&[0u8; 10]).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(null_works(&mut s.client()), "other clients still served");
}

#[test]
fn an_idle_connection_is_closed_and_the_client_can_reconnect() {
    let s = Sluice::start_config(LIMITS);
    let mut c = s.client();
    assert!(null_works(&mut c));
    let t = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(6)));
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed too early: {:?}",
        t.elapsed()
    );
    assert!(null_works(&mut s.client()));
}

#[test]
fn connections_past_the_cap_are_closed_with_a_log_line() {
    let s = Sluice::start_config(LIMITS);
    let mut held: Vec<RpcClient> = (0..4).map(|_| s.client()).collect();
    for c in &mut held {
        assert!(null_works(c));
    }
    let mut extra = s.client();
    assert!(
        !null_works(&mut extra),
        "the fifth connection must be refused"
    );
    assert!(s.log().contains("connection cap reached"), "{}", s.log());
    held.pop();
    // The server notices the close asynchronously.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !null_works(&mut s.client()) {
        assert!(Instant::now() < deadline, "a freed slot is never reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}
