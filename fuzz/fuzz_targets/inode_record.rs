#![no_main]
//! Inode records come from the metadata store (and, in a cluster, from the metadata log): a
//! damaged one must be refused, never trusted or panicked on; one that decodes (either format)
//! must encode to a record that decodes to the same inode.
use backend::engine::Inode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(inode) = Inode::decode(data) {
        let again = inode.encode();
        assert_eq!(Inode::decode(&again).ok(), Some(inode));
    }
});
