//! Which location serves which line: pure functions over availability and
//! locations. Distances are integer math on microdegrees (an equirectangular
//! approximation with a cosine table), so every target picks the same store.
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::ids::{LocationId, Sku};
use crate::stock::Qty;

/// Most lines one request may have.
pub const MAX_LINES: usize = 100;
/// Most candidate locations considered.
pub const MAX_CANDIDATES: usize = 1_024;

/// A point in integer microdegrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeoPoint {
    pub lat_e6: i32,
    pub lon_e6: i32,
}

impl GeoPoint {
    /// From microdegrees, if within -90..=90 and -180..=180 degrees.
    pub fn new(lat_e6: i32, lon_e6: i32) -> Option<GeoPoint> {
        if (-90_000_000..=90_000_000).contains(&lat_e6)
            && (-180_000_000..=180_000_000).contains(&lon_e6)
        {
            Some(GeoPoint { lat_e6, lon_e6 })
        } else {
            None
        }
    }

    /// From JSON degrees: one multiplication and a cast, both exact IEEE
    /// operations, so the result is the same on every target.
    pub fn from_degrees(lat: f64, lon: f64) -> Option<GeoPoint> {
        fn e6(x: f64) -> Option<i32> {
            if !x.is_finite() {
                return None;
            }
            let v = x * 1_000_000.0;
            let r = if v >= 0.0 { v + 0.5 } else { v - 0.5 };
            Some(r as i64).and_then(|r| i32::try_from(r).ok())
        }
        GeoPoint::new(e6(lat)?, e6(lon)?)
    }
}

/// cos(d degrees) * 1e6 for d in 0..=90.
const COS_E6: [i64; 91] = [
    1000000, 999848, 999391, 998630, 997564, 996195, 994522, 992546, 990268, 987688, 984808,
    981627, 978148, 974370, 970296, 965926, 961262, 956305, 951057, 945519, 939693, 933580, 927184,
    920505, 913545, 906308, 898794, 891007, 882948, 874620, 866025, 857167, 848048, 838671, 829038,
    819152, 809017, 798636, 788011, 777146, 766044, 754710, 743145, 731354, 719340, 707107, 694658,
    681998, 669131, 656059, 642788, 629320, 615661, 601815, 587785, 573576, 559193, 544639, 529919,
    515038, 500000, 484810, 469472, 453990, 438371, 422618, 406737, 390731, 374607, 358368, 342020,
    325568, 309017, 292372, 275637, 258819, 241922, 224951, 207912, 190809, 173648, 156434, 139173,
    121869, 104528, 87156, 69756, 52336, 34899, 17452, 0,
];

/// cos(lat) * 1e6 by linear interpolation in the table.
fn cos_e6(lat_e6: i64) -> i64 {
    let a = lat_e6.unsigned_abs().min(90_000_000) as i64;
    let i = (a / 1_000_000) as usize;
    let frac = a % 1_000_000;
    if i >= 90 {
        return 0;
    }
    COS_E6[i] + (COS_E6[i + 1] - COS_E6[i]) * frac / 1_000_000
}

/// The squared equirectangular distance between two points, in squared
/// microdegrees of latitude. Only for ranking: smaller is nearer.
pub fn distance_sq(a: GeoPoint, b: GeoPoint) -> u128 {
    let dlat = i64::from(a.lat_e6) - i64::from(b.lat_e6);
    let mut dlon = i64::from(a.lon_e6) - i64::from(b.lon_e6);
    if dlon > 180_000_000 {
        dlon -= 360_000_000;
    } else if dlon < -180_000_000 {
        dlon += 360_000_000;
    }
    let mean = (i64::from(a.lat_e6) + i64::from(b.lat_e6)) / 2;
    let dx = i128::from(dlon) * i128::from(cos_e6(mean)) / 1_000_000;
    let dy = i128::from(dlat);
    (dx * dx + dy * dy) as u128
}

/// Approximate distance in metres (for display), integer math only.
pub fn distance_m(a: GeoPoint, b: GeoPoint) -> u64 {
    // 1 microdegree of latitude is about 0.11132 m.
    let d = isqrt(distance_sq(a, b));
    (d * 11_132 / 100_000) as u64
}

fn isqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    let mut x = n;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

/// A location as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Site {
    pub id: LocationId,
    pub point: GeoPoint,
    pub ships_online: bool,
    pub pickup: bool,
}

/// How a deployment picks locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Everything from this one location.
    SingleLocation(LocationId),
    /// The nearest online-shipping location that can fill every line, else
    /// each line from the nearest location that can fill it.
    Nearest(GeoPoint),
    /// The customer collects at this store: it must hold every line.
    Pickup(LocationId),
}

/// One line of a cart or order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub sku: Sku,
    pub qty: Qty,
}

/// Where one line is served from (same order as the request's lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub sku: Sku,
    pub qty: Qty,
    pub location: LocationId,
}

/// A line that cannot be served: `insufficient_stock` of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortage {
    pub sku: Sku,
    /// The location asked about, or the best one found.
    pub location: Option<LocationId>,
    pub requested: Qty,
    pub available: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FulfillmentError {
    NoLines,
    TooManyLines {
        max: usize,
    },
    UnknownLocation(LocationId),
    /// The store does not offer pickup (or, for shipping, does not ship online).
    LocationNotEligible(LocationId),
    InsufficientStock(Vec<Shortage>),
}

/// Requested units per SKU, in SKU order.
fn demand(lines: &[Line]) -> BTreeMap<&Sku, Qty> {
    let mut d = BTreeMap::new();
    for l in lines {
        *d.entry(&l.sku).or_insert(0) += l.qty;
    }
    d
}

fn all_at(
    location: &LocationId,
    lines: &[Line],
    available: &mut impl FnMut(&Sku, &LocationId) -> Qty,
) -> Result<Vec<Allocation>, FulfillmentError> {
    let short: Vec<Shortage> = demand(lines)
        .into_iter()
        .filter_map(|(sku, requested)| {
            let a = available(sku, location);
            (a < requested).then(|| Shortage {
                sku: sku.clone(),
                location: Some(location.clone()),
                requested,
                available: a.max(0),
            })
        })
        .collect();
    if !short.is_empty() {
        return Err(FulfillmentError::InsufficientStock(short));
    }
    Ok(lines
        .iter()
        .map(|l| Allocation {
            sku: l.sku.clone(),
            qty: l.qty,
            location: location.clone(),
        })
        .collect())
}

/// Picks a location for every line under `rule`. `available(sku, location)`
/// is the channel's availability (online for shipping and pickup orders).
pub fn allocate(
    rule: &Rule,
    lines: &[Line],
    sites: &[Site],
    mut available: impl FnMut(&Sku, &LocationId) -> Qty,
) -> Result<Vec<Allocation>, FulfillmentError> {
    if lines.is_empty() {
        return Err(FulfillmentError::NoLines);
    }
    if lines.len() > MAX_LINES {
        return Err(FulfillmentError::TooManyLines { max: MAX_LINES });
    }
    let find = |id: &LocationId| sites.iter().find(|s| &s.id == id);
    match rule {
        Rule::SingleLocation(id) => {
            if find(id).is_none() {
                return Err(FulfillmentError::UnknownLocation(id.clone()));
            }
            all_at(id, lines, &mut available)
        }
        Rule::Pickup(id) => match find(id) {
            None => Err(FulfillmentError::UnknownLocation(id.clone())),
            Some(s) if !s.pickup => Err(FulfillmentError::LocationNotEligible(id.clone())),
            Some(_) => all_at(id, lines, &mut available),
        },
        Rule::Nearest(dest) => {
            let mut candidates: Vec<(u128, &Site)> = sites
                .iter()
                .filter(|s| s.ships_online)
                .take(MAX_CANDIDATES)
                .map(|s| (distance_sq(*dest, s.point), s))
                .collect();
            candidates.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
            let want = demand(lines);
            // The nearest location that fills every line.
            for (_, s) in &candidates {
                if want.iter().all(|(sku, q)| available(sku, &s.id) >= *q) {
                    return all_at(&s.id, lines, &mut available);
                }
            }
            // Else split by line: each line from the nearest location that can
            // still fill it, counting what earlier lines took there.
            let mut taken: BTreeMap<(&Sku, &LocationId), Qty> = BTreeMap::new();
            let mut out = Vec::with_capacity(lines.len());
            let mut short = Vec::new();
            for l in lines {
                let mut best: Option<(&LocationId, Qty)> = None;
                let mut chosen = None;
                for (_, s) in &candidates {
                    let left = available(&l.sku, &s.id)
                        - taken.get(&(&l.sku, &s.id)).copied().unwrap_or(0);
                    if left >= l.qty {
                        chosen = Some(&s.id);
                        break;
                    }
                    if best.is_none_or(|(_, b)| left > b) {
                        best = Some((&s.id, left));
                    }
                }
                match chosen {
                    Some(id) => {
                        *taken.entry((&l.sku, id)).or_insert(0) += l.qty;
                        out.push(Allocation {
                            sku: l.sku.clone(),
                            qty: l.qty,
                            location: id.clone(),
                        });
                    }
                    None => short.push(Shortage {
                        sku: l.sku.clone(),
                        location: best.map(|(id, _)| id.clone()),
                        requested: l.qty,
                        available: best.map_or(0, |(_, q)| q.max(0)),
                    }),
                }
            }
            if short.is_empty() {
                Ok(out)
            } else {
                Err(FulfillmentError::InsufficientStock(short))
            }
        }
    }
}
