#![no_main]
//! Chunk maps come from disk (extents.redb): a damaged one must be refused, never trusted or
//! panicked on; one that decodes must encode back to the same bytes.
use backend::nvme::chunk::ChunkMap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(map) = ChunkMap::decode(data) {
        let again = map.encode();
        assert_eq!(ChunkMap::decode(&again).ok(), Some(map.clone()));
        // Runs come out in the canonical (merged) form, so a re-encode is stable.
        assert_eq!(ChunkMap::decode(&again).map(|m| m.encode()).ok(), Some(again));
    }
});
