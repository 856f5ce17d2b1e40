//! Chunk maps: where the blocks of one 1 MiB piece of a file live, with their checksums.
//!
//! A file is cut into chunks of [`CHUNK_BLOCKS`] blocks. A chunk lives on one device; each of its
//! blocks is either a hole or a physical block number on that device plus the crc32c of the
//! block's 4 KiB. The chunk is the unit a replicated store will place, copy and resync; the
//! per-block checksums let it verify a copy without trusting the disk that holds it.
//!
//! Stored form (little-endian): `version: u8 = 1`, `device: u16`, `runs: u16`, then per run of
//! blocks that are consecutive both in the file and on the device: `first: u16` (block index in
//! the chunk), `len: u16`, `physical: u64`, then `len` crc32c values as u32.

use super::{BLOCK, CHUNK_BLOCKS};
use crate::{Error, Result};

const VERSION: u8 = 1;

/// One block of a chunk: `physical == 0` is a hole (block 0 of a device holds its header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub physical: u64,
    pub crc: u32,
}

impl Slot {
    pub fn is_hole(&self) -> bool {
        self.physical == 0
    }
}

/// Runs of mapped slots that are consecutive both in `slots` and on the device:
/// (first index, length, first physical block), in index order. One run is one I/O.
pub fn runs(slots: &[Slot]) -> Vec<(usize, usize, u64)> {
    let mut runs: Vec<(usize, usize, u64)> = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        if slot.is_hole() {
            continue;
        }
        match runs.last_mut() {
            Some((first, len, phys))
                if *first + *len == i && *phys + *len as u64 == slot.physical =>
            {
                *len += 1
            }
            _ => runs.push((i, 1, slot.physical)),
        }
    }
    runs
}

/// The first mapped slot whose block in `buf` (block `i` at `i * BLOCK`) fails its checksum.
pub fn first_bad_block(slots: &[Slot], buf: &[u8]) -> Option<usize> {
    slots.iter().enumerate().position(|(i, slot)| {
        !slot.is_hole() && crc32c::crc32c(&buf[i * BLOCK..(i + 1) * BLOCK]) != slot.crc
    })
}

/// Zeroes the blocks of `buf` that `slots` maps to holes.
pub fn zero_holes(slots: &[Slot], buf: &mut [u8]) {
    for (i, slot) in slots.iter().enumerate() {
        if slot.is_hole() {
            buf[i * BLOCK..(i + 1) * BLOCK].fill(0);
        }
    }
}

/// The decoded map of one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkMap {
    pub device: u16,
    pub slots: Box<[Slot; CHUNK_BLOCKS]>,
}

impl ChunkMap {
    pub fn empty(device: u16) -> ChunkMap {
        ChunkMap {
            device,
            slots: Box::new([Slot::default(); CHUNK_BLOCKS]),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Slot::is_hole)
    }

    /// Runs of mapped blocks: (first index, length, first physical block), in index order.
    pub fn runs(&self) -> Vec<(usize, usize, u64)> {
        runs(&self.slots[..])
    }

    pub fn encode(&self) -> Vec<u8> {
        let runs = self.runs();
        let mapped: usize = runs.iter().map(|r| r.1).sum();
        let mut out = Vec::with_capacity(5 + runs.len() * 12 + mapped * 4);
        out.push(VERSION);
        out.extend_from_slice(&self.device.to_le_bytes());
        // At most CHUNK_BLOCKS runs, which fits a u16.
        out.extend_from_slice(&(runs.len() as u16).to_le_bytes());
        for (first, len, phys) in runs {
            out.extend_from_slice(&(first as u16).to_le_bytes());
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&phys.to_le_bytes());
            for slot in &self.slots[first..first + len] {
                out.extend_from_slice(&slot.crc.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a stored map, refusing anything malformed (it came from disk).
    pub fn decode(bytes: &[u8]) -> Result<ChunkMap> {
        let bad = |what: &str| Error::Io(format!("corrupt chunk map: {what}"));
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8]> {
            if r.len() < n {
                return Err(bad("truncated"));
            }
            let (head, tail) = r.split_at(n);
            r = tail;
            Ok(head)
        };
        let u16_at = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
        if take(1)?[0] != VERSION {
            return Err(bad("unknown version"));
        }
        let device = u16_at(take(2)?);
        let runs = u16_at(take(2)?) as usize;
        if runs > CHUNK_BLOCKS {
            return Err(bad("too many runs"));
        }
        let mut map = ChunkMap::empty(device);
        for _ in 0..runs {
            let first = u16_at(take(2)?) as usize;
            let len = u16_at(take(2)?) as usize;
            let mut phys = [0u8; 8];
            phys.copy_from_slice(take(8)?);
            let phys = u64::from_le_bytes(phys);
            if len == 0
                || first + len > CHUNK_BLOCKS
                || phys == 0
                || phys.checked_add(len as u64).is_none()
            {
                return Err(bad("run out of range"));
            }
            let crcs = take(len * 4)?;
            for i in 0..len {
                let slot = &mut map.slots[first + i];
                if !slot.is_hole() {
                    return Err(bad("overlapping runs"));
                }
                let c = &crcs[i * 4..i * 4 + 4];
                *slot = Slot {
                    physical: phys + i as u64,
                    crc: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                };
            }
        }
        if !r.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_map_survives_encoding_with_holes_and_broken_runs() {
        let mut map = ChunkMap::empty(3);
        for i in 0..10 {
            map.slots[i] = Slot {
                physical: 100 + i as u64,
                crc: i as u32,
            };
        }
        map.slots[12] = Slot {
            physical: 500,
            crc: 9,
        };
        map.slots[13] = Slot {
            physical: 7,
            crc: 8,
        };
        map.slots[CHUNK_BLOCKS - 1] = Slot {
            physical: 8,
            crc: 1,
        };
        assert_eq!(map.runs().len(), 4);
        let decoded = ChunkMap::decode(&map.encode()).unwrap();
        assert_eq!(decoded, map);
    }

    #[test]
    fn a_contiguous_chunk_costs_one_run() {
        let mut map = ChunkMap::empty(0);
        for (i, slot) in map.slots.iter_mut().enumerate() {
            *slot = Slot {
                physical: 1 + i as u64,
                crc: 0,
            };
        }
        assert_eq!(map.encode().len(), 5 + 12 + CHUNK_BLOCKS * 4);
    }

    #[test]
    fn malformed_chunk_maps_are_refused_not_trusted() {
        let mut map = ChunkMap::empty(0);
        map.slots[0] = Slot {
            physical: 10,
            crc: 1,
        };
        let good = map.encode();
        for cut in 0..good.len() {
            assert!(ChunkMap::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(ChunkMap::decode(&extra).is_err());
        // Found by the fuzzer: a run whose physical blocks wrap around u64.
        let wrapping = [
            1, 0, 46, 1, 0, 0, 0, 2, 0, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 154,
            253, 255,
        ];
        assert!(ChunkMap::decode(&wrapping).is_err());
        let mut past_end = good.clone();
        past_end[5..7].copy_from_slice(&(CHUNK_BLOCKS as u16).to_le_bytes());
        assert!(ChunkMap::decode(&past_end).is_err());
    }
}
