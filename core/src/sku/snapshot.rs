//! The serde form of [`SkuState`](super::SkuState) where it is not derived.
//!
//! The state derives its form: a JSON object of its fields in declaration
//! order, each id table a list of `[id, value]` pairs in (FNV hash, id) order,
//! each retention log a list of `[when, id]` pairs, oldest first. Two field
//! types have their own form:
//! - the sites: a map from location id to site, in id order ([`by_location`]);
//! - the active holds: the list of `[id, hold]` pairs alone; their deadline
//!   table is derived, rebuilt on load.
//!
//! The form is pinned byte for byte by `tests/snapshot.rs`; the Durable
//! Object stores it with a format number, to bump when it changes.
use alloc::collections::BTreeMap;

use super::holds::{ActiveHolds, Hold};
use super::site::Site;
use crate::ids::{HoldId, IdMap, LocationId};

/// The sites serialised as a map from location id to site, in id order.
pub(super) mod by_location {
    use super::{BTreeMap, IdMap, LocationId, Site};

    pub fn serialize<S: serde::Serializer>(
        m: &IdMap<LocationId, Site>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let sorted: BTreeMap<&LocationId, &Site> = m.iter_unordered().collect();
        s.collect_map(sorted)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<IdMap<LocationId, Site>, D::Error> {
        let sorted = <BTreeMap<LocationId, Site> as serde::Deserialize>::deserialize(d)?;
        Ok(IdMap::from_pairs(sorted.into_iter().collect()))
    }
}

impl serde::Serialize for ActiveHolds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for ActiveHolds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = <IdMap<HoldId, Hold> as serde::Deserialize>::deserialize(d)?;
        Ok(ActiveHolds::from_map(map))
    }
}
