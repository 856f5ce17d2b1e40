#![no_main]
//! Inter-node frames of the metadata log come from the network: a frame from a node without
//! the key, or a malformed body from one with it, must be refused without panicking or
//! allocating past its length.
use ha::metalog::rpc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = rpc::ClusterKey::new(b"fuzz");
    let _ = rpc::decode_frame(&key, data);
    // Bodies as if their MAC had passed (a peer holding the key but sending garbage).
    if let Ok(req) = rpc::decode_append(data) {
        let again = rpc::encode_append(&req);
        assert_eq!(rpc::decode_append(&again).map(|r| r.entries).ok(), Some(req.entries));
    }
    let _ = rpc::decode_vote(data);
    let _ = rpc::decode_snapshot(data);
});
