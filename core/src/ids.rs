//! Identifiers as validated newtypes. The only way in is `parse`.
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

/// An id that can key an [`IdMap`]: its bytes (what the table hashes, with
/// the table's key) and a stable, unkeyed 64-bit hash of its text, computed
/// once when the id is parsed (what iteration is ordered by).
pub trait Keyed: Clone + Eq {
    /// The id's FNV-1a hash: the same on every target and for every table.
    fn key_hash(&self) -> u64;
    /// The id's text.
    fn key_bytes(&self) -> &[u8];
}

/// SipHash-1-3 of `bytes` under the 128-bit key `(k0, k1)`: the keyed hash
/// that places ids in an [`IdMap`]. Without the key, ids cannot be chosen to
/// collide (unlike FNV, whose full 64-bit collisions can be computed).
pub fn siphash13(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let m = u64::from_le_bytes(w);
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    let m = u64::from_le_bytes(w) | ((bytes.len() as u64 & 0xff) << 56);
    v[3] ^= m;
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The longest probe sequence an [`IdMap`] tolerates before it hashes with
/// SipHash: past it, ids collide in the fast hash (full 64-bit FNV
/// collisions, which the fast hash keeps whatever the key).
pub const MAX_PROBE: usize = 48;

/// A table's hash key: SipHash's 128-bit key, spread from the owner's `u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct HashKey {
    key: u64,
    k0: u64,
    k1: u64,
    /// The fast hash's multiplier: odd, from the key.
    mul: u64,
    /// SipHash of the id's bytes; otherwise the fast hash, a keyed mix of its FNV hash.
    strong: bool,
}

impl HashKey {
    fn new(key: u64) -> Self {
        HashKey {
            key,
            k0: key ^ 0x0f1e_2d3c_4b5a_6978,
            k1: key.rotate_left(32) ^ 0x8796_a5b4_c3d2_e1f0,
            mul: {
                // splitmix64 of the key: any key gives a well-spread odd multiplier.
                let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) | 1
            },
            strong: false,
        }
    }
    #[inline(never)]
    fn strong_hash(&self, bytes: &[u8]) -> u64 {
        siphash13(self.k0, self.k1, bytes)
    }
    #[inline(always)]
    fn hash<K: Keyed>(&self, k: &K) -> u64 {
        if self.strong {
            self.strong_hash(k.key_bytes())
        } else {
            // Multiply-shift under a keyed odd multiplier ([`home`] takes
            // the top bits): distinct FNV hashes land where only the key decides.
            k.key_hash().wrapping_mul(self.mul)
        }
    }
}

/// A map keyed by ids: a hash table (open addressing, linear probing, an
/// index into a dense vector of entries) on a keyed hash (the table's key,
/// [`IdMap::set_hash_key`]), so a lookup is a hash, a probe or two and one
/// comparison, whatever the size, and ids cannot be chosen to collide by
/// anyone who does not know the key.
///
/// The hash starts fast: the id's cached FNV hash times a keyed odd number
/// (multiply-shift, a universal family: ids with distinct FNV hashes share a
/// slot about as often as random ones, whatever the attacker picks). Ids with the
/// same full 64-bit FNV hash (which can be computed) would still collide: the
/// first insert or rebuild that probes past [`MAX_PROBE`] slots switches the
/// table for good to SipHash-1-3 of the id's bytes under the key.
///
/// Nothing observable depends on the key or on where an entry sits:
/// [`IdMap::iter`] (and serialisation, as a list of `[id, value]` pairs) is
/// in (FNV hash, id) order, the same on every target, under every key and
/// however the map was built; [`IdMap::iter_unordered`] is for sums and
/// searches that do not care. A rebuild of the slots (growth, a new key, a
/// load) never costs more than O(n · MAX_PROBE + n log n), however the hashes fall.
#[derive(Clone)]
pub struct IdMap<K: Keyed, V> {
    entries: Vec<(K, V)>,
    /// A power of two long (or empty). 0 is a free slot; otherwise the low 32
    /// bits are the entry's index + 1 and the high 32 bits the high bits of its hash.
    slots: Vec<u64>,
    key: HashKey,
}

impl<K: Keyed, V> Default for IdMap<K, V> {
    fn default() -> Self {
        IdMap {
            entries: Vec::new(),
            slots: Vec::new(),
            key: HashKey::new(0),
        }
    }
}

/// Where a key's probe sequence starts: the hash's top bits (for the fast
/// hash, multiply-shift: the top bits of a product by a random odd number,
/// which two distinct FNV hashes share with probability about 2 / slots).
#[inline]
fn home(h: u64, mask: usize) -> usize {
    (h >> (64 - mask.trailing_ones())) as usize
}

/// The hash's low 32 bits, as the high half of a slot: a cheap filter
/// before comparing ids.
#[inline]
fn tag(h: u64) -> u64 {
    h << 32
}

/// The tag a slot holds.
#[inline]
fn slot_tag(s: u64) -> u64 {
    s & 0xFFFF_FFFF_0000_0000
}

impl<K: Keyed, V> IdMap<K, V> {
    /// An empty map hashing under `key`.
    pub fn with_hash_key(key: u64) -> Self {
        IdMap {
            key: HashKey::new(key),
            ..IdMap::default()
        }
    }

    /// The key this map hashes under (0 unless set).
    pub fn hash_key(&self) -> u64 {
        self.key.key
    }

    /// Rehashes every entry under `key`: O(n log n). Changes nothing
    /// observable (iteration order does not depend on the key).
    pub fn set_hash_key(&mut self, key: u64) {
        if key == self.key.key {
            return;
        }
        self.key = HashKey::new(key);
        self.rehash();
    }

    /// Whether the table hashes ids with SipHash (after a flood of colliding ids).
    pub fn is_hardened(&self) -> bool {
        self.key.strong
    }

    /// Rebuilds the slots under the current hash.
    fn rehash(&mut self) {
        self.rebuild(self.slots.len());
    }

    /// The keyed hash of entry `idx`.
    #[inline]
    fn hash_at(&self, idx: usize) -> u64 {
        self.key.hash(&self.entries[idx].0)
    }

    /// (slot, entry index) of `k`, if present.
    #[inline(always)]
    fn find(&self, k: &K) -> Option<(usize, usize)> {
        self.probe(k, self.key.hash(k)).ok()
    }

    /// `Ok((slot, entry index))` of `k` (keyed hash `h`), or `Err(the free
    /// slot where it would go)` (`usize::MAX` when there are no slots yet).
    #[inline(always)]
    fn probe(&self, k: &K, h: u64) -> Result<(usize, usize), usize> {
        if self.slots.is_empty() {
            return Err(usize::MAX);
        }
        let mask = self.slots.len() - 1;
        let mut i = home(h, mask);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Err(i);
            }
            if slot_tag(s) == tag(h) {
                let idx = (s & 0xFFFF_FFFF) as usize - 1;
                if self.entries[idx].0 == *k {
                    return Ok((i, idx));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `k` (absent, keyed hash `h`: `free` is the slot `probe` found)
    /// and returns its entry index.
    #[inline]
    fn push_new(&mut self, k: K, h: u64, v: V, free: usize) -> usize {
        let idx = self.entries.len();
        self.entries.push((k, v));
        // Load factor at most 1/2: short probe sequences.
        if (idx + 1) * 2 > self.slots.len() {
            self.rebuild((self.slots.len() * 2).max(16));
        } else {
            self.slots[free] = tag(h) | (idx as u64 + 1);
            let mask = self.slots.len() - 1;
            if (free.wrapping_sub(home(h, mask)) & mask) >= MAX_PROBE {
                self.harden();
            }
        }
        idx
    }

    /// Switches to SipHash for good (a no-op once switched).
    #[cold]
    fn harden(&mut self) {
        if !self.key.strong {
            self.key.strong = true;
            self.rehash();
        }
    }

    /// Rebuilds the slots, `n` long (a power of two, at least twice the
    /// entries), from `hashes`: each entry at the first free slot from its
    /// home. A placement that probes past [`MAX_PROBE`] slots stops that:
    /// the fast hash hardens to SipHash (and rebuilds again), and under
    /// SipHash the slots are built by [`IdMap::rebuild_sorted`], O(n log n)
    /// however the hashes fall.
    fn rebuild(&mut self, n: usize) {
        let n = n.max(16).max((self.entries.len() * 2).next_power_of_two());
        let mask = n - 1;
        let mut slots = alloc::vec![0u64; n];
        for idx in 0..self.entries.len() {
            let h = self.hash_at(idx);
            let start = home(h, mask);
            let mut i = start;
            while slots[i] != 0 {
                i = (i + 1) & mask;
                if (i.wrapping_sub(start) & mask) >= MAX_PROBE {
                    if self.key.strong {
                        self.rebuild_sorted(n);
                    } else {
                        self.harden();
                    }
                    return;
                }
            }
            slots[i] = tag(h) | (idx as u64 + 1);
        }
        self.slots = slots;
    }

    /// Builds the slots, `n` long, in O(n log n) however the hashes fall:
    /// the entries are placed in order of their home slot, each at its home
    /// or just after the one before, and those that run past the end wrap to
    /// the first free slots from the start. Every entry then finds the slots
    /// from its home to itself occupied, as linear probing needs.
    fn rebuild_sorted(&mut self, n: usize) {
        let mask = n - 1;
        let hashes: Vec<u64> = (0..self.entries.len()).map(|i| self.hash_at(i)).collect();
        let mut order: Vec<(u32, u32)> = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (home(*h, mask) as u32, i as u32))
            .collect();
        order.sort_unstable();
        let mut slots = alloc::vec![0u64; n];
        let mut next = 0usize;
        let mut wrapped = Vec::new();
        for (h, i) in order {
            let at = (h as usize).max(next);
            if at >= n {
                wrapped.push(i);
                continue;
            }
            slots[at] = tag(hashes[i as usize]) | (u64::from(i) + 1);
            next = at + 1;
        }
        let mut at = 0;
        for i in wrapped {
            while slots[at] != 0 {
                at += 1;
            }
            slots[at] = tag(hashes[i as usize]) | (u64::from(i) + 1);
        }
        self.slots = slots;
    }

    #[inline(always)]
    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k).map(|(_, idx)| &self.entries[idx].1)
    }
    #[inline(always)]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.find(k).map(|(_, idx)| &mut self.entries[idx].1)
    }
    pub fn get_key_value(&self, k: &K) -> Option<(&K, &V)> {
        self.find(k).map(|(_, idx)| {
            let (k, v) = &self.entries[idx];
            (k, v)
        })
    }
    #[inline(always)]
    pub fn contains_key(&self, k: &K) -> bool {
        self.find(k).is_some()
    }
    /// Inserts or replaces (keeping the key already there, as `BTreeMap` does).
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let h = self.key.hash(&k);
        match self.probe(&k, h) {
            Ok((_, idx)) => Some(core::mem::replace(&mut self.entries[idx].1, v)),
            Err(free) => {
                self.push_new(k, h, v, free);
                None
            }
        }
    }
    /// Inserts `k` (a clone) with `f()` unless it is already there; whether it inserted.
    #[inline]
    pub fn insert_if_absent(&mut self, k: &K, f: impl FnOnce() -> V) -> bool {
        let h = self.key.hash(k);
        match self.probe(k, h) {
            Ok(_) => false,
            Err(free) => {
                self.push_new(k.clone(), h, f(), free);
                true
            }
        }
    }
    /// The value at `k`, inserting `f()` (with a clone of `k`) if there is none.
    pub fn get_or_insert_with(&mut self, k: &K, f: impl FnOnce() -> V) -> &mut V {
        let h = self.key.hash(k);
        let idx = match self.probe(k, h) {
            Ok((_, idx)) => idx,
            Err(free) => self.push_new(k.clone(), h, f(), free),
        };
        &mut self.entries[idx].1
    }
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.remove_entry(k).map(|(_, v)| v)
    }
    /// Removes `k`, giving back the key as stored and its value.
    pub fn remove_entry(&mut self, k: &K) -> Option<(K, V)> {
        let (slot, idx) = self.find(k)?;
        Some(self.remove_at(slot, idx))
    }
    /// Removes entry `idx`, which `slot` points to.
    fn remove_at(&mut self, slot: usize, idx: usize) -> (K, V) {
        // Backward-shift deletion: no tombstones, probe sequences stay short.
        let mask = self.slots.len() - 1;
        let mut hole = slot;
        let mut i = (hole + 1) & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                break;
            }
            let at = (s & 0xFFFF_FFFF) as usize - 1;
            let want = home(self.hash_at(at), mask);
            // Move `s` into the hole unless its home lies cyclically in (hole, i].
            if (i.wrapping_sub(want) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = i;
            }
            i = (i + 1) & mask;
        }
        self.slots[hole] = 0;
        // The last entry moves into `idx`: repoint its slot.
        let last = self.entries.len() - 1;
        if idx != last {
            let h = self.hash_at(last);
            let mut j = home(h, mask);
            while (self.slots[j] & 0xFFFF_FFFF) as usize != last + 1 {
                j = (j + 1) & mask;
            }
            self.slots[j] = tag(h) | (idx as u64 + 1);
        }
        self.entries.swap_remove(idx)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The entries in no particular order (deterministic, but dependent on
    /// the map's history): for sums, counts and searches only.
    pub fn iter_unordered(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
    /// The keys in no particular order (see [`IdMap::iter_unordered`]).
    pub fn keys_unordered(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }
    /// The values in no particular order (see [`IdMap::iter_unordered`]).
    pub fn values_unordered(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
    /// The longest probe sequence (slots from an entry's home to the entry):
    /// 1 when no two entries share a home. For the tests.
    pub fn max_probe_len(&self) -> usize {
        if self.slots.is_empty() {
            return 0;
        }
        let mask = self.slots.len() - 1;
        (0..self.slots.len())
            .filter(|i| self.slots[*i] != 0)
            .map(|i| {
                let at = (self.slots[i] & 0xFFFF_FFFF) as usize - 1;
                (i.wrapping_sub(home(self.hash_at(at), mask)) & mask) + 1
            })
            .max()
            .unwrap_or(0)
    }
}

impl<K: Keyed + Ord, V> IdMap<K, V> {
    /// A map of `pairs` under key 0 (a later pair replaces an earlier one
    /// with the same id), built in O(n log n) however the ids hash: no
    /// insert probes past another's entries.
    pub fn from_pairs(mut pairs: Vec<(K, V)>) -> Self {
        // Stable: of equal ids, the last stays last; keep it.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries: Vec<(K, V)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match entries.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => entries.push((k, v)),
            }
        }
        let mut m = IdMap {
            entries,
            ..IdMap::default()
        };
        if !m.entries.is_empty() {
            m.rehash();
        }
        m
    }

    /// In (hash, id) order: deterministic on every target, not alphabetical. Sorts: O(n log n).
    ///
    /// A bucket sort: entries are spread into about two buckets per entry by
    /// the top bits of their hash (bucket order is hash order), then an
    /// insertion sort by (hash, id) moves each entry within its bucket only.
    /// Ids that crowd into a few buckets (FNV's top bits are weak for ids
    /// that differ only at the end, and can be chosen to collide) would make
    /// that quadratic: past 16 moves per entry, it finishes with a comparison sort.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let n = self.entries.len();
        let bits = (usize::BITS - n.leading_zeros()).clamp(1, 16);
        let bucket = |h: u64| (h >> (64 - bits)) as usize;
        // next[b]: where bucket b's next entry goes.
        let mut next = alloc::vec![0u32; (1 << bits) + 1];
        for (k, _) in &self.entries {
            next[bucket(k.key_hash()) + 1] += 1;
        }
        for b in 1..next.len() {
            next[b] += next[b - 1];
        }
        let mut order: Vec<(u64, u32)> = alloc::vec![(0, 0); n];
        for (i, (k, _)) in self.entries.iter().enumerate() {
            let h = k.key_hash();
            let b = bucket(h);
            order[next[b] as usize] = (h, i as u32);
            next[b] += 1;
        }
        let before = |a: (u64, u32), b: (u64, u32)| {
            a.0 < b.0 || (a.0 == b.0 && self.entries[a.1 as usize].0 < self.entries[b.1 as usize].0)
        };
        let mut budget = 16 * n;
        for i in 1..n {
            let e = order[i];
            let mut j = i;
            while j > 0 && before(e, order[j - 1]) {
                order[j] = order[j - 1];
                j -= 1;
            }
            order[j] = e;
            budget = budget.saturating_sub(i - j);
            if budget == 0 {
                order.sort_unstable_by(|a, b| {
                    (a.0, &self.entries[a.1 as usize].0).cmp(&(b.0, &self.entries[b.1 as usize].0))
                });
                break;
            }
        }
        order.into_iter().map(|(_, i)| {
            let (k, v) = &self.entries[i as usize];
            (k, v)
        })
    }
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }
}

impl<K: Keyed, V: PartialEq> PartialEq for IdMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .entries
                .iter()
                .all(|(k, v)| other.get(k).is_some_and(|w| w == v))
    }
}

impl<K: Keyed, V: Eq> Eq for IdMap<K, V> {}

impl<K: Keyed + Ord + fmt::Debug, V: fmt::Debug> fmt::Debug for IdMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Keyed + Ord + serde::Serialize, V: serde::Serialize> serde::Serialize for IdMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Loads as a map under key 0 (the owner sets its key after: see
/// [`IdMap::set_hash_key`]), built in O(n log n) however the ids hash.
impl<'de, K: Keyed + Ord + serde::Deserialize<'de>, V: serde::Deserialize<'de>>
    serde::Deserialize<'de> for IdMap<K, V>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = <Vec<(K, V)> as serde::Deserialize>::deserialize(d)?;
        Ok(IdMap::from_pairs(pairs))
    }
}

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    Empty,
    TooLong { max: usize },
    BadCharacter { index: usize },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => f.write_str("must not be empty"),
            IdError::TooLong { max } => write!(f, "must be at most {max} characters"),
            IdError::BadCharacter { index } => {
                write!(f, "character {index} is not one of A-Z a-z 0-9 . _ -")
            }
        }
    }
}

/// Maximum length of an identifier (SKU, location, reservation, sale...).
pub const MAX_ID_LEN: usize = 64;
/// Maximum length of an operation (idempotency) key.
pub const MAX_OP_LEN: usize = 255;

/// Checks the identifier rule of the API: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub fn validate_id(s: &str) -> Result<(), IdError> {
    validate_id_len(s, MAX_ID_LEN)
}

/// The identifier rule with another length limit.
pub fn validate_id_len(s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(index) = s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
    {
        return Err(IdError::BadCharacter { index });
    }
    if s.len() > max {
        return Err(IdError::TooLong { max });
    }
    Ok(())
}

/// What every id type shares: construction with its hash, equality that
/// compares the cached hashes first, order and `Hash` by text.
macro_rules! id_common {
    ($name:ident) => {
        impl $name {
            fn new(s: &str) -> Self {
                Self(Arc::from(s), crate::fingerprint::fnv1a(s.as_bytes()))
            }
        }

        impl crate::ids::Keyed for $name {
            #[inline]
            fn key_hash(&self) -> u64 {
                self.1
            }
            #[inline]
            fn key_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl PartialEq for $name {
            #[inline]
            fn eq(&self, other: &Self) -> bool {
                self.1 == other.1 && (Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0)
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                self.0.cmp(&other.0)
            }
        }

        impl core::hash::Hash for $name {
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state)
            }
        }
    };
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        id_type!($(#[$m])* $name, MAX_ID_LEN);
    };
    ($(#[$m:meta])* $name:ident, $max:expr) => {
        $(#[$m])*
        ///
        /// Cheap to clone: the text is shared, never copied.
        /// Ordered by its text; its FNV-1a hash is computed once, at `parse`.
        #[derive(Clone)]
        pub struct $name(Arc<str>, u64);

        id_common!($name);

        impl $name {
            /// Validates and wraps `s`.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                validate_id_len(s, $max)?;
                Ok(Self::new(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <alloc::string::String as serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A stock keeping unit: one sellable unit.
    Sku
);
id_type!(
    /// A store or warehouse.
    LocationId
);
/// Maximum length of a hold id: room for a kind prefix before a 64-character client id.
pub const MAX_HOLD_LEN: usize = 96;

id_type!(
    /// A hold on stock: a reservation, an order's allocation, a transfer's shipment.
    /// The shell prefixes the client's id with its kind (`res.`, `ord.`...), so the
    /// limit is [`MAX_HOLD_LEN`].
    HoldId,
    MAX_HOLD_LEN
);
id_type!(
    /// A POS sale, idempotent forever (the shell's durable record; core
    /// remembers a day of them).
    SaleId
);
id_type!(
    /// A POS terminal.
    TerminalId
);

/// An operation key: makes a retried command recognisably the same command.
/// 1 to 255 printable ASCII characters (an `Idempotency-Key` plus a suffix).
#[derive(Clone)]
pub struct OpId(Arc<str>, u64);

id_common!(OpId);

impl OpId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if let Some(index) = s.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(IdError::BadCharacter { index });
        }
        if s.len() > MAX_OP_LEN {
            return Err(IdError::TooLong { max: MAX_OP_LEN });
        }
        Ok(Self::new(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for OpId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for OpId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <alloc::string::String as serde::Deserialize>::deserialize(d)?;
        OpId::parse(&s).map_err(serde::de::Error::custom)
    }
}

id_type!(
    /// A transfer of stock between two locations.
    TransferId
);
id_type!(
    /// An order, from any channel.
    OrderId
);
id_type!(
    /// A return (and its exchange).
    ReturnId
);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::format;

    /// Random inserts and removes against a `BTreeMap`, through several growths.
    #[test]
    fn id_map_matches_btree_map() {
        let mut x: u64 = 7;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let ids: Vec<OpId> = (0..3000)
            .map(|i| OpId::parse(&format!("op-{i}")).unwrap())
            .collect();
        let mut m: IdMap<OpId, u64> = IdMap::default();
        let mut r: BTreeMap<OpId, u64> = BTreeMap::new();
        for step in 0..60_000u64 {
            let k = &ids[(next() % ids.len() as u64) as usize];
            if next() % 3 == 0 {
                assert_eq!(m.remove(k), r.remove(k));
            } else {
                assert_eq!(m.insert(k.clone(), step), r.insert(k.clone(), step));
            }
            assert_eq!(m.len(), r.len());
            if step % 997 == 0 {
                for k in &ids {
                    assert_eq!(m.get(k), r.get(k));
                }
            }
        }
        let mut sorted: Vec<(&OpId, &u64)> = r.iter().collect();
        sorted.sort_by(|a, b| (a.0.key_hash(), a.0).cmp(&(b.0.key_hash(), b.0)));
        assert!(m.iter().eq(sorted.into_iter()));
    }

    /// The slot the old, unkeyed table put `h` in (its FNV hash), `bits` wide.
    fn unkeyed_home(h: u64, bits: u32) -> usize {
        (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & ((1 << bits) - 1)
    }

    /// Ids an attacker picks so that they all land in one slot of the old
    /// table (which indexed by the FNV hash itself) spread under a keyed one:
    /// short probes, no hardening needed, every id found.
    #[test]
    fn ids_colliding_unkeyed_spread_under_a_key() {
        // 2,048 slots hold up to 1,024 entries: pick ids whose FNV hash has home 0 there.
        let chosen: Vec<OpId> = (0..4_000_000u64)
            .map(|i| OpId::parse(&format!("x{i}")).unwrap())
            .filter(|k| unkeyed_home(k.key_hash(), 11) == 0)
            .take(600)
            .collect();
        assert_eq!(chosen.len(), 600);
        for key in [0u64, 0x5eed, u64::MAX] {
            let mut m: IdMap<OpId, usize> = IdMap::with_hash_key(key);
            for (i, k) in chosen.iter().enumerate() {
                m.insert(k.clone(), i);
            }
            assert!(!m.is_hardened(), "key {key}");
            assert!(m.max_probe_len() < 16, "key {key}: {}", m.max_probe_len());
            for (i, k) in chosen.iter().enumerate() {
                assert_eq!(m.get(k), Some(&i));
            }
        }
    }

    /// Ids that collide in the fast hash under one key (found by someone who
    /// knew it) harden that table to SipHash, and spread under another key.
    #[test]
    fn ids_colliding_under_one_key_spread_under_another() {
        let probe: IdMap<OpId, ()> = IdMap::with_hash_key(42);
        let chosen: Vec<OpId> = (0..2_000_000u64)
            .map(|i| OpId::parse(&format!("y{i}")).unwrap())
            .filter(|k| home(probe.key.hash(k), 1023) == 5)
            .take(300)
            .collect();
        assert_eq!(chosen.len(), 300);
        let mut same: IdMap<OpId, usize> = IdMap::with_hash_key(42);
        let mut other: IdMap<OpId, usize> = IdMap::with_hash_key(43);
        for (i, k) in chosen.iter().enumerate() {
            same.insert(k.clone(), i);
            other.insert(k.clone(), i);
            assert!(same.max_probe_len() <= MAX_PROBE);
        }
        assert!(same.is_hardened());
        assert!(same.max_probe_len() < 16, "{}", same.max_probe_len());
        assert!(!other.is_hardened());
        assert!(other.max_probe_len() < 16, "{}", other.max_probe_len());
        for (i, k) in chosen.iter().enumerate() {
            assert_eq!(same.get(k), Some(&i));
            assert_eq!(other.get(k), Some(&i));
        }
        // Nothing observable depends on the key or the hardening.
        assert!(same.iter().eq(other.iter()));
        assert!(same == other);
    }

    /// An id type whose FNV hash is the same for every id (what full 64-bit
    /// FNV collisions look like) and, with `same_bytes`, whose bytes too (a
    /// SipHash flood by someone who knows the key).
    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
    struct Colliding(u32, bool, [u8; 4]);

    impl Colliding {
        fn new(i: u32, same_bytes: bool) -> Self {
            Colliding(i, same_bytes, i.to_le_bytes())
        }
    }

    impl Keyed for Colliding {
        fn key_hash(&self) -> u64 {
            0x1234_5678_9abc_def0
        }
        fn key_bytes(&self) -> &[u8] {
            if self.1 {
                b"same"
            } else {
                &self.2
            }
        }
    }

    /// Full FNV collisions: the fast hash keeps them together whatever the
    /// key, so the table hardens to SipHash, which spreads them.
    #[test]
    fn full_fnv_collisions_harden_the_table() {
        let mut m: IdMap<Colliding, u32> = IdMap::with_hash_key(7);
        for i in 0..5_000 {
            m.insert(Colliding::new(i, false), i);
            assert!(m.max_probe_len() <= MAX_PROBE);
        }
        assert!(m.is_hardened());
        assert!(m.max_probe_len() < 24, "{}", m.max_probe_len());
        for i in (0..5_000).step_by(2) {
            assert_eq!(m.remove(&Colliding::new(i, false)), Some(i));
        }
        for i in 0..5_000 {
            let want = (i % 2 == 1).then_some(i);
            assert_eq!(m.get(&Colliding::new(i, false)).copied(), want);
        }
    }

    /// Even ids that collide in every hash (a flood under a known key) cost
    /// no quadratic rebuild: loading and rekeying stay O(n log n), and every
    /// id is still found.
    #[test]
    fn total_collisions_still_work_and_rebuild_sorted() {
        let n = 2_000u32;
        let pairs: Vec<(Colliding, u32)> = (0..n).map(|i| (Colliding::new(i, true), i)).collect();
        let mut m = IdMap::from_pairs(pairs);
        assert!(m.is_hardened());
        m.set_hash_key(99);
        assert!(m.is_hardened());
        assert_eq!(m.len(), n as usize);
        for i in 0..n {
            assert_eq!(m.get(&Colliding::new(i, true)), Some(&i));
        }
        for i in (0..n).step_by(3) {
            assert_eq!(m.remove(&Colliding::new(i, true)), Some(i));
        }
        for i in 0..n {
            let want = (i % 3 != 0).then_some(i);
            assert_eq!(m.get(&Colliding::new(i, true)).copied(), want);
        }
    }

    /// The same entries give the same iteration and equality under any key,
    /// and a rekeyed map keeps every entry; a later duplicate in `from_pairs` wins.
    #[test]
    fn the_key_changes_nothing_observable() {
        let ids: Vec<OpId> = (0..500)
            .map(|i| OpId::parse(&format!("op-{i}")).unwrap())
            .collect();
        let mut a: IdMap<OpId, usize> = IdMap::default();
        let mut b: IdMap<OpId, usize> = IdMap::with_hash_key(0xdead_beef);
        for (i, k) in ids.iter().enumerate() {
            a.insert(k.clone(), i);
        }
        for (i, k) in ids.iter().enumerate().rev() {
            b.insert(k.clone(), i);
        }
        assert!(a.iter().eq(b.iter()));
        assert!(a == b);
        a.set_hash_key(3);
        assert_eq!(a.hash_key(), 3);
        assert!(a.iter().eq(b.iter()));
        for (i, k) in ids.iter().enumerate() {
            assert_eq!(a.get(k), Some(&i));
        }
        let m = IdMap::from_pairs(alloc::vec![
            (ids[0].clone(), 1),
            (ids[1].clone(), 2),
            (ids[0].clone(), 3)
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&ids[0]), Some(&3));
    }

    /// SipHash-1-3 against std's (`DefaultHasher::new()` is SipHash-1-3 under
    /// the zero key; `write` of bytes adds no length prefix), for every length
    /// up to 63 (whole and partial 8-byte blocks).
    #[test]
    fn siphash13_matches_std() {
        extern crate std;
        use std::hash::Hasher;
        let text: Vec<u8> = (0u8..64).collect();
        for n in 0..text.len() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write(&text[..n]);
            assert_eq!(siphash13(0, 0, &text[..n]), h.finish(), "length {n}");
        }
    }

    /// Ids whose hashes share their top bits (one bucket) still iterate in
    /// (hash, id) order, through the comparison-sort fallback.
    #[test]
    fn id_map_iter_with_crowded_buckets() {
        let mut m: IdMap<OpId, u64> = IdMap::default();
        let mut all = Vec::new();
        for i in 0..600_000u64 {
            let k = OpId::parse(&format!("k-{i}")).unwrap();
            if k.key_hash() >> 56 == 0 {
                all.push(k.clone());
                m.insert(k, i);
            }
        }
        assert!(all.len() > 1_000);
        all.sort_by(|a, b| (a.key_hash(), a).cmp(&(b.key_hash(), b)));
        assert!(m.iter().map(|(k, _)| k).eq(all.iter()));
    }
}
