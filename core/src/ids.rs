//! Identifiers as validated newtypes. The only way in is `parse`.
use alloc::sync::Arc;
use core::fmt;

/// An id that can key an [`IdMap`]: a stable 64-bit hash of its text.
pub trait Keyed: Clone + Ord {
    fn key_hash(&self) -> u64;
}

/// A map keyed by ids, ordered by (hash of the id, id): lookups compare one
/// `u64` per tree level instead of a string, and iteration order is still
/// deterministic on every target (FNV-1a of the text). Serialised as a list
/// of `[id, value]` pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMap<K: Keyed, V>(alloc::collections::BTreeMap<(u64, K), V>);

impl<K: Keyed, V> Default for IdMap<K, V> {
    fn default() -> Self {
        IdMap(alloc::collections::BTreeMap::new())
    }
}

impl<K: Keyed, V> IdMap<K, V> {
    pub fn get(&self, k: &K) -> Option<&V> {
        self.0.get(&(k.key_hash(), k.clone()))
    }
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.0.get_mut(&(k.key_hash(), k.clone()))
    }
    pub fn get_key_value(&self, k: &K) -> Option<(&K, &V)> {
        self.0
            .get_key_value(&(k.key_hash(), k.clone()))
            .map(|((_, k), v)| (k, v))
    }
    pub fn contains_key(&self, k: &K) -> bool {
        self.get(k).is_some()
    }
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.0.insert((k.key_hash(), k), v)
    }
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.0.remove(&(k.key_hash(), k.clone()))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// In (hash, id) order: deterministic, not alphabetical.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|((_, k), v)| (k, v))
    }
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.values()
    }
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.keys().map(|(_, k)| k)
    }
}

impl<K: Keyed + serde::Serialize, V: serde::Serialize> serde::Serialize for IdMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, K: Keyed + serde::Deserialize<'de>, V: serde::Deserialize<'de>> serde::Deserialize<'de>
    for IdMap<K, V>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = <alloc::vec::Vec<(K, V)> as serde::Deserialize>::deserialize(d)?;
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

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        id_type!($(#[$m])* $name, MAX_ID_LEN);
    };
    ($(#[$m:meta])* $name:ident, $max:expr) => {
        $(#[$m])*
        ///
        /// Cheap to clone: the text is shared, never copied.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl crate::ids::Keyed for $name {
            fn key_hash(&self) -> u64 {
                crate::fingerprint::fnv1a(self.0.as_bytes())
            }
        }

        impl $name {
            /// Validates and wraps `s`.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                validate_id_len(s, $max)?;
                Ok(Self(Arc::from(s)))
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
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(Arc<str>);

impl Keyed for OpId {
    fn key_hash(&self) -> u64 {
        crate::fingerprint::fnv1a(self.0.as_bytes())
    }
}

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
        Ok(Self(Arc::from(s)))
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
