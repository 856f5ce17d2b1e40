#![no_main]
//! Metadata log entries come from disk (`raft-log.redb`) and, in a cluster, from other nodes:
//! a malformed one must be refused without panicking; one that decodes must encode to an entry
//! that decodes the same, and a group inside it must split into bounded batches.
use ha::metalog::{decode_group, encode_group, log};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = log::decode_entry(data) {
        let again = log::encode_entry(&entry);
        assert_eq!(log::decode_entry(&again).ok(), Some(entry));
    }
    if let Ok(group) = decode_group(data) {
        let owned: Vec<Vec<u8>> = group.iter().map(|b| b.to_vec()).collect();
        assert_eq!(encode_group(&owned), data);
    }
});
