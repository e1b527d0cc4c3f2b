//! Where a reservation's lines are held: the API's `fulfillment` object and
//! the deployment's split rule turned into [`fulfillment::allocate`] calls.
//! The shell calls [`place`] with the catalog's sites and the availability it
//! read, then creates the coordinator with the lines it returns. The holds
//! still decide: availability read a moment ago is only a guess.
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::fulfillment::{
    self, allocate, distance_sq, FulfillmentError, GeoPoint, Line, Rule, Site,
};
use crate::ids::{LocationId, Sku};
use crate::stock::{Channel, Qty};

use super::ReservationLine;

/// The API's `fulfillment.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentKind {
    Ship,
    Pickup,
}

/// The deployment's rule for a shipment no single location can fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// One location fills every line, or the reservation is refused.
    Never,
    /// Each line from the nearest location that can fill it.
    ByLine,
}

/// The API's `fulfillment` object, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub kind: FulfillmentKind,
    /// The location named by the client: the only one used.
    pub location: Option<LocationId>,
    /// Where a shipment goes: the nearest shipping location is preferred.
    pub destination: Option<GeoPoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// A pickup names no store.
    PickupNeedsLocation,
    /// No location ships online (give `fulfillment.location`).
    NoShippingLocation,
    /// The allocation's own refusal (no lines, unknown location, not a
    /// pickup store, insufficient stock...).
    Fulfillment(FulfillmentError),
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementError::PickupNeedsLocation => {
                f.write_str("a pickup needs fulfillment.location")
            }
            PlacementError::NoShippingLocation => {
                f.write_str("no location ships online; give fulfillment.location")
            }
            PlacementError::Fulfillment(FulfillmentError::NoLines) => f.write_str("no lines"),
            PlacementError::Fulfillment(FulfillmentError::TooManyLines { max }) => {
                write!(f, "at most {max} lines")
            }
            PlacementError::Fulfillment(FulfillmentError::UnknownLocation(l)) => {
                write!(f, "unknown location {l}")
            }
            PlacementError::Fulfillment(FulfillmentError::LocationNotEligible(l)) => {
                write!(f, "{l} does not offer this fulfillment")
            }
            PlacementError::Fulfillment(FulfillmentError::InsufficientStock(_)) => {
                f.write_str("not enough stock for every line; nothing was reserved")
            }
        }
    }
}

/// Who reserves for which channel: a POS key holds for the till, every
/// other caller for the online channel.
pub fn channel_for(pos_key: bool) -> Channel {
    if pos_key {
        Channel::Pos
    } else {
        Channel::Online
    }
}

/// Lines of the same SKU added up, in order of first appearance: a
/// reservation holds once per SKU object.
pub fn merge_lines(lines: &[Line]) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::with_capacity(lines.len());
    let mut at: BTreeMap<&Sku, usize> = BTreeMap::new();
    for l in lines {
        match at.get(&l.sku) {
            Some(&i) => out[i].qty = out[i].qty.saturating_add(l.qty),
            None => {
                at.insert(&l.sku, out.len());
                out.push(l.clone());
            }
        }
    }
    out
}

/// Chooses the location of every line (merged per SKU, see [`merge_lines`]):
/// - a pickup: its store, which must offer pickup and hold every line;
/// - a shipment from a named location: that location, for every line;
/// - otherwise the nearest online-shipping location (to `destination`; with
///   none, in location id order) that can fill every line; if there is none,
///   each line from the nearest location that can fill it when `split` is
///   [`Split::ByLine`], else `InsufficientStock` at the nearest location.
///
/// `available(sku, location)` is the reservation channel's availability.
pub fn place(
    placement: &Placement,
    split: Split,
    lines: &[Line],
    sites: &[Site],
    mut available: impl FnMut(&Sku, &LocationId) -> Qty,
) -> Result<Vec<ReservationLine>, PlacementError> {
    let lines = merge_lines(lines);
    let rule = match (placement.kind, &placement.location) {
        (FulfillmentKind::Pickup, None) => return Err(PlacementError::PickupNeedsLocation),
        (FulfillmentKind::Pickup, Some(l)) => Rule::Pickup(l.clone()),
        (FulfillmentKind::Ship, Some(l)) => Rule::SingleLocation(l.clone()),
        (FulfillmentKind::Ship, None) => {
            return nearest(placement.destination, split, &lines, sites, available)
        }
    };
    to_lines(allocate(&rule, &lines, sites, &mut available))
}

fn to_lines(
    r: Result<Vec<fulfillment::Allocation>, FulfillmentError>,
) -> Result<Vec<ReservationLine>, PlacementError> {
    r.map(|a| {
        a.into_iter()
            .map(|a| ReservationLine {
                sku: a.sku,
                qty: a.qty,
                location: a.location,
            })
            .collect()
    })
    .map_err(PlacementError::Fulfillment)
}

fn nearest(
    destination: Option<GeoPoint>,
    split: Split,
    lines: &[Line],
    sites: &[Site],
    mut available: impl FnMut(&Sku, &LocationId) -> Qty,
) -> Result<Vec<ReservationLine>, PlacementError> {
    // Without a destination every site is equally near: `allocate` breaks
    // ties by location id.
    let origin = GeoPoint {
        lat_e6: 0,
        lon_e6: 0,
    };
    let flat: Vec<Site>;
    let (dest, sites) = match destination {
        Some(d) => (d, sites),
        None => {
            flat = sites
                .iter()
                .map(|s| Site {
                    point: origin,
                    ..s.clone()
                })
                .collect();
            (origin, &flat[..])
        }
    };
    let Some(first) = sites
        .iter()
        .filter(|s| s.ships_online)
        .min_by(|a, b| {
            distance_sq(dest, a.point)
                .cmp(&distance_sq(dest, b.point))
                .then_with(|| a.id.cmp(&b.id))
        })
        .map(|s| s.id.clone())
    else {
        return Err(PlacementError::NoShippingLocation);
    };
    let allocated = allocate(&Rule::Nearest(dest), lines, sites, &mut available);
    let single = |a: &[fulfillment::Allocation]| {
        a.iter()
            .all(|x| a.first().is_some_and(|f| f.location == x.location))
    };
    match (split, allocated) {
        (Split::ByLine, r) => to_lines(r),
        (Split::Never, Ok(a)) if single(&a) => to_lines(Ok(a)),
        // No single location fills every line: report the nearest one's shortages.
        (Split::Never, Ok(_) | Err(FulfillmentError::InsufficientStock(_))) => to_lines(allocate(
            &Rule::SingleLocation(first),
            lines,
            sites,
            &mut available,
        )),
        (Split::Never, Err(e)) => Err(PlacementError::Fulfillment(e)),
    }
}
