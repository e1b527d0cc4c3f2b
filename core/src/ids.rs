//! Identifiers as validated newtypes. The only way in is `parse`.
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

/// An id that can key an [`IdMap`]: a stable 64-bit hash of its text,
/// computed once when the id is parsed.
pub trait Keyed: Clone + Eq {
    fn key_hash(&self) -> u64;
}

/// A map keyed by ids: a hash table on the id's cached FNV-1a hash (open
/// addressing, linear probing, an index into a dense vector of entries), so
/// a lookup is a probe or two and one integer comparison, whatever the size.
///
/// Nothing observable depends on where an entry sits: [`IdMap::iter`] (and
/// serialisation, as a list of `[id, value]` pairs) is in (hash, id) order,
/// the same on every target and however the map was built;
/// [`IdMap::iter_unordered`] is for sums and searches that do not care.
#[derive(Clone)]
pub struct IdMap<K: Keyed, V> {
    entries: Vec<(K, V)>,
    /// A power of two long (or empty). 0 is a free slot; otherwise the low 32
    /// bits are the entry's index + 1 and the high 32 bits the high bits of its hash.
    slots: Vec<u64>,
}

impl<K: Keyed, V> Default for IdMap<K, V> {
    fn default() -> Self {
        IdMap {
            entries: Vec::new(),
            slots: Vec::new(),
        }
    }
}

/// Where a key's probe sequence starts (Fibonacci hashing: the top bits of
/// a multiply, well mixed even when the hash's low bits are not).
#[inline]
fn home(h: u64, mask: usize) -> usize {
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

#[inline]
fn tag(h: u64) -> u64 {
    h & 0xFFFF_FFFF_0000_0000
}

impl<K: Keyed, V> IdMap<K, V> {
    /// (slot, entry index) of `k`, if present.
    #[inline]
    fn find(&self, k: &K) -> Option<(usize, usize)> {
        self.probe(k).ok()
    }

    /// `Ok((slot, entry index))` of `k`, or `Err(the free slot where it
    /// would go)` (`usize::MAX` when there are no slots yet).
    #[inline(always)]
    fn probe(&self, k: &K) -> Result<(usize, usize), usize> {
        if self.slots.is_empty() {
            return Err(usize::MAX);
        }
        let h = k.key_hash();
        let mask = self.slots.len() - 1;
        let mut i = home(h, mask);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Err(i);
            }
            if tag(s) == tag(h) {
                let idx = (s & 0xFFFF_FFFF) as usize - 1;
                if self.entries[idx].0 == *k {
                    return Ok((i, idx));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `k` (absent: `free` is the slot `probe` found) and returns its entry index.
    #[inline]
    fn push_new(&mut self, k: K, v: V, free: usize) -> usize {
        let h = k.key_hash();
        let idx = self.entries.len();
        self.entries.push((k, v));
        // Load factor at most 1/2: short probe sequences.
        if (idx + 1) * 2 > self.slots.len() {
            self.grow();
        } else {
            self.slots[free] = tag(h) | (idx as u64 + 1);
        }
        idx
    }

    /// Puts entry `idx` (hash `h`) in the first free slot of its probe sequence.
    fn place(slots: &mut [u64], h: u64, idx: usize) {
        let mask = slots.len() - 1;
        let mut i = home(h, mask);
        while slots[i] != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = tag(h) | (idx as u64 + 1);
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(16);
        let mut slots = alloc::vec![0u64; n];
        for (idx, (k, _)) in self.entries.iter().enumerate() {
            Self::place(&mut slots, k.key_hash(), idx);
        }
        self.slots = slots;
    }

    #[inline]
    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k).map(|(_, idx)| &self.entries[idx].1)
    }
    #[inline]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.find(k).map(|(_, idx)| &mut self.entries[idx].1)
    }
    pub fn get_key_value(&self, k: &K) -> Option<(&K, &V)> {
        self.find(k).map(|(_, idx)| {
            let (k, v) = &self.entries[idx];
            (k, v)
        })
    }
    #[inline]
    pub fn contains_key(&self, k: &K) -> bool {
        self.find(k).is_some()
    }
    /// Inserts or replaces (keeping the key already there, as `BTreeMap` does).
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.probe(&k) {
            Ok((_, idx)) => Some(core::mem::replace(&mut self.entries[idx].1, v)),
            Err(free) => {
                self.push_new(k, v, free);
                None
            }
        }
    }
    /// Inserts `k` (a clone) with `f()` unless it is already there; whether it inserted.
    #[inline]
    pub fn insert_if_absent(&mut self, k: &K, f: impl FnOnce() -> V) -> bool {
        match self.probe(k) {
            Ok(_) => false,
            Err(free) => {
                self.push_new(k.clone(), f(), free);
                true
            }
        }
    }
    /// The value at `k`, inserting `f()` (with a clone of `k`) if there is none.
    pub fn get_or_insert_with(&mut self, k: &K, f: impl FnOnce() -> V) -> &mut V {
        let idx = match self.probe(k) {
            Ok((_, idx)) => idx,
            Err(free) => self.push_new(k.clone(), f(), free),
        };
        &mut self.entries[idx].1
    }
    /// The entry whose key hashes to `h` and for which `pred` holds (the
    /// caller makes `pred` pick out at most one): a lookup by hash, for
    /// tables that keep a key's hash rather than a copy of the key.
    #[inline]
    pub fn find_by_hash(&self, h: u64, pred: impl Fn(&V) -> bool) -> Option<(&K, &V)> {
        let (_, idx) = self.probe_hash(h, pred)?;
        let (k, v) = &self.entries[idx];
        Some((k, v))
    }
    /// (slot, entry index) of the entry [`IdMap::find_by_hash`] finds.
    #[inline]
    fn probe_hash(&self, h: u64, pred: impl Fn(&V) -> bool) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = home(h, mask);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if tag(s) == tag(h) {
                let idx = (s & 0xFFFF_FFFF) as usize - 1;
                let (k, v) = &self.entries[idx];
                if k.key_hash() == h && pred(v) {
                    return Some((i, idx));
                }
            }
            i = (i + 1) & mask;
        }
    }
    /// Removes the entry [`IdMap::find_by_hash`] finds.
    pub fn remove_by_hash(&mut self, h: u64, pred: impl Fn(&V) -> bool) -> Option<(K, V)> {
        let (slot, idx) = self.probe_hash(h, pred)?;
        Some(self.remove_at(slot, idx))
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
            let want = home(self.entries[at].0.key_hash(), mask);
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
            let h = self.entries[last].0.key_hash();
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
}

impl<K: Keyed + Ord, V> IdMap<K, V> {
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

impl<'de, K: Keyed + serde::Deserialize<'de>, V: serde::Deserialize<'de>> serde::Deserialize<'de>
    for IdMap<K, V>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = <Vec<(K, V)> as serde::Deserialize>::deserialize(d)?;
        let mut m = IdMap::default();
        for (k, v) in pairs {
            m.insert(k, v);
        }
        Ok(m)
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
    /// A POS sale, idempotent forever.
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
