#![no_main]
//! File-system calls shipped between nodes, and their answers, come from the network (after
//! the frame's MAC): a malformed body from a node holding the key must be refused without
//! panicking or allocating past the frame, and whatever decodes must encode back to itself.
use bytes::Bytes;
use ha::forward::wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok((envelope, call)) = wire::decode_shipped(body.clone()) {
        let (mut again, tail) = wire::encode_shipped(&call, envelope.clone());
        again.extend_from_slice(tail.as_deref().unwrap_or_default());
        assert_eq!(
            wire::decode_shipped(Bytes::from(again)).ok(),
            Some((envelope, call))
        );
    }
    if let Ok((verifier, answer)) = wire::decode_answer(body) {
        let (mut again, tail) = wire::encode_answer(verifier, &answer);
        again.extend_from_slice(tail.as_deref().unwrap_or_default());
        assert_eq!(
            wire::decode_answer(Bytes::from(again)).ok(),
            Some((verifier, answer))
        );
    }
});
