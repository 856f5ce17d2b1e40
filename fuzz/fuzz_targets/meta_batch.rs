#![no_main]
//! Metadata batches come from the metadata log and from other nodes: a malformed one must be
//! refused without panicking or allocating past its own length; one that decodes must encode
//! to bytes that decode to the same batch.
use backend::engine::wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = wire::decode(data) {
        let again = wire::encode(&batch.as_batch());
        assert_eq!(wire::decode(&again).ok(), Some(batch));
    }
});
