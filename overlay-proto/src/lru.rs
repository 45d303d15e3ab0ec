//! A bounded map that forgets its least recently used entry when full: state
//! keyed by something an attacker chooses (source prefixes) stays within a
//! fixed size, and the entries in use survive a flood of new keys for as long
//! as they are used more recently than the flood's.
//!
//! Every operation is O(1): a hash map from key to slot, and the slots linked
//! in use order. The hasher is std's keyed SipHash, so chosen keys cannot be
//! made to collide.
use std::collections::HashMap;
use std::hash::Hash;

const NIL: usize = usize::MAX;

#[derive(Debug, Clone)]
struct Slot<K, V> {
    key: K,
    value: V,
    /// Towards the most recently used.
    newer: usize,
    /// Towards the least recently used.
    older: usize,
}

/// At most `capacity` entries; inserting into a full map evicts the least
/// recently used one.
#[derive(Debug, Clone)]
pub struct LruMap<K, V> {
    index: HashMap<K, usize>,
    slots: Vec<Slot<K, V>>,
    newest: usize,
    oldest: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V> LruMap<K, V> {
    /// An empty map holding at most `capacity` (at least 1) entries.
    pub fn new(capacity: usize) -> LruMap<K, V> {
        LruMap {
            index: HashMap::new(),
            slots: Vec::new(),
            newest: NIL,
            oldest: NIL,
            capacity: capacity.max(1),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `key` is held (does not count as a use).
    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    /// Forget everything (keeps the allocation).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.newest = NIL;
        self.oldest = NIL;
    }

    /// The value for `key`, made with `make` if absent (evicting the least
    /// recently used entry if full); either way `key` becomes the most
    /// recently used.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.index.get(&key) {
            Some(&i) => {
                self.unlink(i);
                i
            }
            None if self.slots.len() < self.capacity => {
                self.slots.push(Slot {
                    key,
                    value: make(),
                    newer: NIL,
                    older: NIL,
                });
                let i = self.slots.len() - 1;
                self.index.insert(key, i);
                i
            }
            None => {
                let i = self.oldest;
                self.unlink(i);
                let s = &mut self.slots[i];
                self.index.remove(&s.key);
                s.key = key;
                s.value = make();
                self.index.insert(key, i);
                i
            }
        };
        self.push_newest(i);
        &mut self.slots[i].value
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = (self.slots[i].newer, self.slots[i].older);
        match newer {
            NIL => self.newest = older,
            n => self.slots[n].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o].newer = newer,
        }
    }

    fn push_newest(&mut self, i: usize) {
        self.slots[i].newer = NIL;
        self.slots[i].older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.slots[n].newer = i,
        }
        self.newest = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut m: LruMap<u32, u32> = LruMap::new(3);
        for k in 1..=3 {
            *m.get_or_insert_with(k, || 0) += k;
        }
        // Use 1: 2 is now the oldest.
        *m.get_or_insert_with(1, || 99) += 10;
        m.get_or_insert_with(4, || 40);
        assert_eq!(m.len(), 3);
        assert!(!m.contains(&2));
        assert_eq!(*m.get_or_insert_with(1, || 99), 11);
        assert_eq!(*m.get_or_insert_with(3, || 99), 3);
        // 4 is the oldest now.
        m.get_or_insert_with(5, || 50);
        assert!(!m.contains(&4));
        assert!(m.contains(&1) && m.contains(&3) && m.contains(&5));
    }

    #[test]
    fn a_flood_of_new_keys_keeps_one_that_is_used_in_between() {
        let mut m: LruMap<u64, u64> = LruMap::new(64);
        m.get_or_insert_with(0, || 7);
        for k in 1..100_000u64 {
            m.get_or_insert_with(k, || k);
            if k % 32 == 0 {
                assert_eq!(*m.get_or_insert_with(0, || 0), 7, "key 0 evicted at {k}");
            }
            assert!(m.len() <= 64);
        }
        m.clear();
        assert!(m.is_empty());
        assert_eq!(*m.get_or_insert_with(3, || 1), 1);
    }
}
