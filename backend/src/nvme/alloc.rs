//! Free space of one device: a map of free extents with a next-fit cursor.
//!
//! The map lives in memory only. At open it is rebuilt as the complement of the blocks that the
//! stored chunk maps reference, so it can never disagree with them: a block written by a write
//! that no durable map references yet is free again after a crash, which is exactly right.

use std::collections::BTreeMap;

/// Free extents of one device, `start -> len`, never adjacent (they are merged).
#[derive(Debug, Default)]
pub struct FreeMap {
    extents: BTreeMap<u64, u64>,
    free: u64,
    /// Where the next search starts, so consecutive writes land consecutively.
    cursor: u64,
}

impl FreeMap {
    /// Free space of a device of `capacity` blocks, block 0 excepted, minus `used` extents
    /// (start, len) in any order (they must not overlap).
    pub fn from_used(capacity: u64, mut used: Vec<(u64, u64)>) -> FreeMap {
        used.sort_unstable();
        let mut map = FreeMap::default();
        let mut next = 1; // Block 0 is the device header.
        for (start, len) in used {
            if start > next {
                map.release(next, start.min(capacity) - next);
            }
            next = next.max(start + len);
        }
        if capacity > next {
            map.release(next, capacity - next);
        }
        map
    }

    pub fn free_blocks(&self) -> u64 {
        self.free
    }

    /// Takes `want` blocks, as few extents as possible; `None` (and nothing taken) if fewer
    /// than `want` are free.
    pub fn take(&mut self, want: u64) -> Option<Vec<(u64, u64)>> {
        if want == 0 {
            return Some(Vec::new());
        }
        if self.free < want {
            return None;
        }
        // Next fit: the first extent at or after the cursor that holds all of it, then from
        // the start; failing that, gather pieces.
        let fit = self
            .extents
            .range(self.cursor..)
            .chain(self.extents.range(..self.cursor))
            .find(|(_, &len)| len >= want)
            .map(|(&start, _)| start);
        let mut out = Vec::new();
        match fit {
            Some(start) => out.push(self.cut(start, want)),
            None => {
                let mut left = want;
                while left > 0 {
                    // free >= want guarantees extents remain while left > 0.
                    let (&start, &len) = self.extents.iter().next_back()?;
                    let piece = self.cut(start, len.min(left));
                    left -= piece.1;
                    out.push(piece);
                }
            }
        }
        Some(out)
    }

    /// Where next fit would start: the first free block at or after the cursor (or the first
    /// free block at all).
    pub fn next_fit_start(&self) -> Option<u64> {
        self.extents
            .range(self.cursor..)
            .next()
            .or_else(|| self.extents.iter().next())
            .map(|(&start, _)| start)
    }

    /// Takes exactly blocks `[goal, goal + want)` if they are all free.
    pub fn take_at(&mut self, goal: u64, want: u64) -> Option<(u64, u64)> {
        let (&start, &len) = self.extents.range(..=goal).next_back()?;
        if want == 0 || goal.checked_add(want)? > start + len {
            return None;
        }
        self.extents.remove(&start);
        if goal > start {
            self.extents.insert(start, goal - start);
        }
        if start + len > goal + want {
            self.extents.insert(goal + want, start + len - goal - want);
        }
        self.free -= want;
        Some((goal, want))
    }

    /// Cuts `n` blocks from the front of the free extent at `start`.
    fn cut(&mut self, start: u64, n: u64) -> (u64, u64) {
        let len = self.extents.remove(&start).unwrap_or(0);
        debug_assert!(len >= n);
        if len > n {
            self.extents.insert(start + n, len - n);
        }
        self.free -= n;
        self.cursor = start + n;
        (start, n)
    }

    /// Returns `len` blocks at `start` to the free space, merging with neighbours.
    pub fn release(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.free += len;
        let mut start = start;
        let mut len = len;
        if let Some((&prev, &plen)) = self.extents.range(..start).next_back() {
            debug_assert!(prev + plen <= start, "double free of block {start}");
            if prev + plen == start {
                self.extents.remove(&prev);
                start = prev;
                len += plen;
            }
        }
        if let Some(&nlen) = self.extents.get(&(start + len)) {
            self.extents.remove(&(start + len));
            len += nlen;
        }
        self.extents.insert(start, len);
    }

    /// Adds blocks `[old, new)` when a file-backed device grows.
    pub fn grow(&mut self, old_capacity: u64, new_capacity: u64) {
        if new_capacity > old_capacity {
            self.release(old_capacity.max(1), new_capacity - old_capacity.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_the_complement_of_used_extents() {
        let map = FreeMap::from_used(100, vec![(50, 10), (1, 9), (99, 1)]);
        assert_eq!(map.free_blocks(), 100 - 1 - 9 - 10 - 1);
        assert_eq!(
            map.extents
                .iter()
                .map(|(&s, &l)| (s, l))
                .collect::<Vec<_>>(),
            vec![(10, 40), (60, 39)]
        );
    }

    #[test]
    fn consecutive_takes_are_contiguous() {
        let mut map = FreeMap::from_used(1000, vec![]);
        let a = map.take(256).unwrap();
        let b = map.take(256).unwrap();
        assert_eq!(a, vec![(1, 256)]);
        assert_eq!(b, vec![(257, 256)]);
    }

    #[test]
    fn a_fragmented_device_still_serves_a_large_take_in_pieces() {
        let mut map = FreeMap::from_used(20, vec![(3, 2), (8, 2), (13, 2)]);
        let free = map.free_blocks();
        let got = map.take(free).unwrap();
        assert_eq!(got.iter().map(|p| p.1).sum::<u64>(), free);
        assert_eq!(map.free_blocks(), 0);
        assert!(map.take(1).is_none());
        for (s, l) in got {
            map.release(s, l);
        }
        assert_eq!(map.free_blocks(), free);
        assert_eq!(map.extents.len(), 4, "released pieces merge back");
    }

    #[test]
    fn a_goal_is_taken_exactly_when_free_and_refused_otherwise() {
        let mut map = FreeMap::from_used(100, vec![(10, 5)]);
        assert_eq!(map.take_at(20, 10), Some((20, 10)));
        assert_eq!(map.free_blocks(), 99 - 5 - 10);
        assert_eq!(map.take_at(25, 1), None, "taken already");
        assert_eq!(map.take_at(12, 1), None, "used");
        assert_eq!(map.take_at(95, 10), None, "past the end");
        map.release(20, 10);
        assert_eq!(map.free_blocks(), 99 - 5);
        assert_eq!(map.extents.len(), 2);
    }

    #[test]
    fn released_neighbours_merge() {
        let mut map = FreeMap::from_used(10, vec![(1, 9)]);
        map.release(5, 2);
        map.release(3, 2);
        map.release(7, 3);
        assert_eq!(map.extents.len(), 1);
        assert_eq!(map.free_blocks(), 7);
        map.grow(10, 20);
        assert_eq!(map.free_blocks(), 17);
        assert_eq!(map.extents.len(), 1);
    }
}
