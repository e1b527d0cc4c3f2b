//! State -> what the shopper sees. One pure function, [`view`], feeds the one DOM
//! render function: a fetch, a refresh or (later) a live update only changes the
//! [`WidgetState`] and renders again.

use crate::availability::{Availability, Row};
use crate::config::{Config, ConfigError};

/// What the widget is waiting on, or what it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting on the first answer.
    Loading,
    Loaded(Availability),
    Failed(Failure),
}

/// Why no figure can be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The key was refused (401) or may not read availability (403).
    Unauthorized,
    /// 404: a SKU (or location) the catalog does not know, or a wrong `api`.
    NotFound,
    /// Any other answer that retrying will not change (4xx).
    Rejected(u16),
    /// An answer that may change on retry (429, 5xx).
    Unavailable(u16),
    /// No answer: offline, DNS, CORS, connection refused.
    Network,
    /// No answer within [`REQUEST_TIMEOUT_MS`].
    Timeout,
    /// An answer that is not the JSON of API.md.
    BadResponse,
}

impl Failure {
    /// A short machine-readable reason, exposed as `data-reason` for the page's developer.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Unauthorized => "unauthorized",
            Failure::NotFound => "not-found",
            Failure::Rejected(_) => "rejected",
            Failure::Unavailable(_) => "unavailable",
            Failure::Network => "network",
            Failure::Timeout => "timeout",
            Failure::BadResponse => "bad-response",
        }
    }

    /// Whether asking again could give another answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::Unavailable(_) | Failure::Network | Failure::Timeout
        )
    }

    /// Classifies a non-2xx HTTP status.
    pub fn from_status(status: u16) -> Failure {
        match status {
            401 | 403 => Failure::Unauthorized,
            404 => Failure::NotFound,
            408 | 429 | 500..=599 => Failure::Unavailable(status),
            _ => Failure::Rejected(status),
        }
    }
}

/// One request gives up after this long.
pub const REQUEST_TIMEOUT_MS: u32 = 10_000;
/// At most this many requests per fetch (the first and its retries).
pub const MAX_ATTEMPTS: u32 = 3;
/// Waits before the 2nd and 3rd attempts.
const RETRY_DELAYS_MS: [u32; (MAX_ATTEMPTS - 1) as usize] = [1_000, 4_000];

/// How long to wait before attempt `attempt + 1` after attempt `attempt` (0-based)
/// failed with `failure`; `None` to give up.
pub fn retry_delay_ms(attempt: u32, failure: &Failure) -> Option<u32> {
    if !failure.is_transient() {
        return None;
    }
    RETRY_DELAYS_MS.get(attempt as usize).copied()
}

/// Whether a periodic refresh should go on after `phase`: a refused key stays refused.
pub fn keeps_refreshing(phase: &Phase) -> bool {
    !matches!(
        phase,
        Phase::Failed(Failure::Unauthorized | Failure::NotFound | Failure::Rejected(_))
    )
}

/// Everything the element shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WidgetState {
    pub config: Result<Config, ConfigError>,
    pub phase: Phase,
}

/// The tone of the message: its colour, its `part` name and its `data-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Loading,
    InStock,
    LowStock,
    OutOfStock,
    Error,
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Loading => "loading",
            Tone::InStock => "in-stock",
            Tone::LowStock => "low-stock",
            Tone::OutOfStock => "out-of-stock",
            Tone::Error => "error",
        }
    }
}

/// What to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub tone: Tone,
    pub text: String,
    /// For failures: [`Failure::reason`] or `"config"`.
    pub reason: Option<&'static str>,
}

pub const LOADING_TEXT: &str = "Checking availability\u{2026}";
pub const ERROR_TEXT: &str = "Availability unavailable";

/// Where else a SKU is in stock, in a shopper's words: stores by count (or
/// the one store's name), warehouses as "online" (a warehouse is not a store).
struct Places<'a> {
    stores: usize,
    only_store: Option<&'a str>,
    online: bool,
}

impl<'a> Places<'a> {
    fn of(rows: impl Iterator<Item = &'a Row>) -> Places<'a> {
        let mut p = Places {
            stores: 0,
            only_store: None,
            online: false,
        };
        for r in rows.filter(|r| r.available > 0) {
            if r.is_warehouse() {
                p.online = true;
            } else {
                p.stores += 1;
                p.only_store = r.place();
            }
        }
        p
    }

    /// "at 2 other stores and online", "at Downtown", "online"; `None`: nowhere.
    fn phrase(&self, other: bool) -> Option<String> {
        let other = if other { "other " } else { "" };
        let stores = match (self.stores, self.only_store) {
            (0, _) => None,
            (1, Some(name)) if other.is_empty() => Some(format!("at {name}")),
            (1, _) => Some(format!("at 1 {other}store")),
            (n, _) => Some(format!("at {n} {other}stores")),
        };
        match (stores, self.online) {
            (None, false) => None,
            (None, true) => Some("online".into()),
            (Some(s), false) => Some(s),
            (Some(s), true) => Some(format!("{s} and online")),
        }
    }
}

pub fn view(state: &WidgetState) -> View {
    let config = match &state.config {
        Ok(config) => config,
        Err(_) => return error_view("config"),
    };
    let data = match &state.phase {
        Phase::Loading => {
            return View {
                tone: Tone::Loading,
                text: LOADING_TEXT.into(),
                reason: None,
            }
        }
        Phase::Failed(failure) => return error_view(failure.reason()),
        Phase::Loaded(data) => data,
    };
    let threshold = i64::from(config.low_stock_threshold);
    let sku = config.sku.as_str();

    let (tone, text) = match config.location.as_deref() {
        Some(location) => {
            // The page's `location-name`, else the server's name, else the id.
            let name = config
                .location_name
                .as_deref()
                .or_else(|| data.row(sku, location).and_then(|r| r.place()))
                .unwrap_or(location);
            let here = data.at(sku, location);
            // Pickup is said where the store offers it.
            let pickup = if data.row(sku, location).and_then(|r| r.pickup) == Some(true) {
                ", pickup available"
            } else {
                ""
            };
            if here > threshold {
                (Tone::InStock, format!("{here} in stock at {name}{pickup}"))
            } else if here > 0 {
                (
                    Tone::LowStock,
                    format!("Low stock: {here} left at {name}{pickup}"),
                )
            } else {
                let elsewhere = Places::of(
                    data.locations(sku)
                        .filter(|r| r.location.as_deref() != Some(location)),
                );
                let text = match elsewhere.phrase(true) {
                    None => format!("Out of stock at {name}"),
                    Some(p) => format!("Out of stock here, available {p}"),
                };
                (Tone::OutOfStock, text)
            }
        }
        None => {
            let total = data.total(sku);
            let place = Places::of(data.locations(sku))
                .phrase(false)
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            if total > threshold {
                (Tone::InStock, format!("{total} in stock{place}"))
            } else if total > 0 {
                (Tone::LowStock, format!("Low stock: {total} left{place}"))
            } else {
                (Tone::OutOfStock, "Out of stock".into())
            }
        }
    };
    View {
        tone,
        text,
        reason: None,
    }
}

fn error_view(reason: &'static str) -> View {
    View {
        tone: Tone::Error,
        text: ERROR_TEXT.into(),
        reason: Some(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, in Node, under wasm-bindgen-test
    // (`make widget-unit`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn config(location: Option<&str>, name: Option<&str>) -> Config {
        Config {
            sku: "TEE".into(),
            api: "https://h".into(),
            key: "pk_dev".into(),
            location: location.map(Into::into),
            location_name: name.map(Into::into),
            low_stock_threshold: 3,
            refresh_seconds: None,
            channel: crate::config::Channel::Online,
        }
    }

    /// Rows for SKU `TEE`; a location written `id=Name` has a display name.
    fn rows(rows: &[(&str, i64)]) -> Availability {
        let items: Vec<String> = rows
            .iter()
            .map(|(l, a)| match l.split_once('=') {
                Some((id, name)) => format!(
                    r#"{{"sku":"TEE","location":"{id}","location_name":"{name}","available":{a}}}"#
                ),
                None => format!(r#"{{"sku":"TEE","location":"{l}","available":{a}}}"#),
            })
            .collect();
        Availability::parse(&format!(r#"{{"items":[{}]}}"#, items.join(","))).unwrap()
    }

    fn show(config: Config, phase: Phase) -> String {
        let v = view(&WidgetState {
            config: Ok(config),
            phase,
        });
        format!("{}: {}", v.tone.as_str(), v.text)
    }

    fn at_store_1(data: &[(&str, i64)]) -> String {
        show(config(Some("store-1"), None), Phase::Loaded(rows(data)))
    }

    #[test]
    fn one_store() {
        assert_eq!(
            at_store_1(&[("store-1", 4), ("store-2", 0), ("total", 4)]),
            "in-stock: 4 in stock at store-1"
        );
        assert_eq!(
            at_store_1(&[("store-1", 3)]),
            "low-stock: Low stock: 3 left at store-1"
        );
        assert_eq!(
            at_store_1(&[("store-1", 1)]),
            "low-stock: Low stock: 1 left at store-1"
        );
        assert_eq!(
            at_store_1(&[
                ("store-1", 0),
                ("store-2", 5),
                ("warehouse-1", 2),
                ("total", 7)
            ]),
            "out-of-stock: Out of stock here, available at 2 other stores"
        );
        assert_eq!(
            at_store_1(&[("store-2", 5), ("store-3", 0), ("total", 5)]),
            "out-of-stock: Out of stock here, available at 1 other store"
        );
        assert_eq!(
            at_store_1(&[("store-1", -2), ("store-2", 0), ("total", 0)]),
            "out-of-stock: Out of stock at store-1"
        );
        assert_eq!(at_store_1(&[]), "out-of-stock: Out of stock at store-1");
    }

    /// Rows with the server's kinds: `s1` (store, pickup), `s2` (store), `w` (warehouse).
    fn shop(s1: i64, s2: i64, w: i64) -> Availability {
        Availability::parse(&format!(
            r#"{{"items":[
              {{"sku":"TEE","location":"s1","location_name":"Downtown","location_kind":"store","pickup":true,"available":{s1}}},
              {{"sku":"TEE","location":"s2","location_name":"Riverside","location_kind":"store","pickup":false,"available":{s2}}},
              {{"sku":"TEE","location":"w","location_name":"Central","location_kind":"warehouse","pickup":false,"available":{w}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn shopper_wording_stores_online_and_pickup() {
        let at = |l: &str, a: Availability| show(config(Some(l), None), Phase::Loaded(a));
        let all = |a: Availability| show(config(None, None), Phase::Loaded(a));
        assert_eq!(
            at("s1", shop(9, 0, 0)),
            "in-stock: 9 in stock at Downtown, pickup available"
        );
        assert_eq!(
            at("s1", shop(2, 0, 0)),
            "low-stock: Low stock: 2 left at Downtown, pickup available"
        );
        assert_eq!(at("s2", shop(0, 9, 0)), "in-stock: 9 in stock at Riverside");
        assert_eq!(
            at("s1", shop(0, 4, 6)),
            "out-of-stock: Out of stock here, available at 1 other store and online"
        );
        assert_eq!(
            at("s1", shop(0, 0, 6)),
            "out-of-stock: Out of stock here, available online"
        );
        assert_eq!(
            at("s1", shop(0, 0, 0)),
            "out-of-stock: Out of stock at Downtown"
        );
        assert_eq!(
            at("w", shop(1, 3, 0)),
            "out-of-stock: Out of stock here, available at 2 other stores"
        );
        assert_eq!(
            all(shop(4, 8, 6)),
            "in-stock: 18 in stock at 2 stores and online"
        );
        assert_eq!(
            all(shop(4, 0, 6)),
            "in-stock: 10 in stock at Downtown and online"
        );
        assert_eq!(all(shop(0, 0, 6)), "in-stock: 6 in stock online");
        assert_eq!(all(shop(0, 5, 0)), "in-stock: 5 in stock at Riverside");
        assert_eq!(all(shop(0, 0, 0)), "out-of-stock: Out of stock");
    }

    #[test]
    fn the_servers_location_names() {
        assert_eq!(
            at_store_1(&[("store-1=Downtown", 9), ("store-2=Riverside", 1)]),
            "in-stock: 9 in stock at Downtown"
        );
        assert_eq!(
            show(
                config(Some("store-1"), Some("Main Street")),
                Phase::Loaded(rows(&[("store-1=Downtown", 9)]))
            ),
            "in-stock: 9 in stock at Main Street"
        );
        assert_eq!(
            show(
                config(None, None),
                Phase::Loaded(rows(&[("store-1=Downtown", 0), ("store-2=Riverside", 8)]))
            ),
            "in-stock: 8 in stock at Riverside"
        );
    }

    #[test]
    fn location_name_and_threshold() {
        let mut c = config(Some("store-1"), Some("Downtown"));
        assert_eq!(
            show(c.clone(), Phase::Loaded(rows(&[("store-1", 3)]))),
            "low-stock: Low stock: 3 left at Downtown"
        );
        c.low_stock_threshold = 0;
        assert_eq!(
            show(c.clone(), Phase::Loaded(rows(&[("store-1", 1)]))),
            "in-stock: 1 in stock at Downtown"
        );
        c.low_stock_threshold = 10;
        assert_eq!(
            show(c, Phase::Loaded(rows(&[("store-1", 10), ("store-2", 11)]))),
            "low-stock: Low stock: 10 left at Downtown"
        );
    }

    #[test]
    fn every_store() {
        let all = |data: &[(&str, i64)]| show(config(None, None), Phase::Loaded(rows(data)));
        assert_eq!(
            all(&[
                ("store-1", 4),
                ("store-2", 8),
                ("warehouse-1", 0),
                ("total", 12)
            ]),
            "in-stock: 12 in stock at 2 stores"
        );
        assert_eq!(
            all(&[("store-1", 0), ("store-2", 8), ("total", 8)]),
            "in-stock: 8 in stock at store-2"
        );
        assert_eq!(
            all(&[("store-1", 2), ("total", 2)]),
            "low-stock: Low stock: 2 left at store-1"
        );
        assert_eq!(all(&[("total", 2)]), "low-stock: Low stock: 2 left");
        assert_eq!(
            all(&[("store-1", 0), ("total", 0)]),
            "out-of-stock: Out of stock"
        );
        assert_eq!(all(&[]), "out-of-stock: Out of stock");
    }

    #[test]
    fn loading_and_failures() {
        let c = || config(Some("store-1"), None);
        assert_eq!(
            show(c(), Phase::Loading),
            "loading: Checking availability\u{2026}"
        );
        for failure in [
            Failure::Unauthorized,
            Failure::Network,
            Failure::Timeout,
            Failure::BadResponse,
            Failure::NotFound,
            Failure::Rejected(400),
            Failure::Unavailable(503),
        ] {
            let v = view(&WidgetState {
                config: Ok(c()),
                phase: Phase::Failed(failure.clone()),
            });
            assert_eq!(v.tone, Tone::Error);
            assert_eq!(v.text, "Availability unavailable");
            assert_eq!(v.reason, Some(failure.reason()));
        }
        let v = view(&WidgetState {
            config: Err(ConfigError::Missing("sku")),
            phase: Phase::Loading,
        });
        assert_eq!(
            (v.tone, v.text.as_str(), v.reason),
            (Tone::Error, ERROR_TEXT, Some("config"))
        );
    }

    #[test]
    fn statuses_classify() {
        assert_eq!(Failure::from_status(401), Failure::Unauthorized);
        assert_eq!(Failure::from_status(403), Failure::Unauthorized);
        assert_eq!(Failure::from_status(400), Failure::Rejected(400));
        assert_eq!(Failure::from_status(404), Failure::NotFound);
        assert_eq!(Failure::from_status(413), Failure::Rejected(413));
        assert_eq!(Failure::from_status(429), Failure::Unavailable(429));
        assert_eq!(Failure::from_status(503), Failure::Unavailable(503));
    }

    #[test]
    fn retries_are_bounded_and_only_for_transient_failures() {
        assert_eq!(retry_delay_ms(0, &Failure::Network), Some(1_000));
        assert_eq!(retry_delay_ms(1, &Failure::Timeout), Some(4_000));
        assert_eq!(retry_delay_ms(2, &Failure::Unavailable(503)), None);
        assert_eq!(retry_delay_ms(0, &Failure::Unauthorized), None);
        assert_eq!(retry_delay_ms(0, &Failure::BadResponse), None);
        assert_eq!(retry_delay_ms(0, &Failure::Rejected(400)), None);
        let attempts = 1
            + (0..)
                .take_while(|&a| retry_delay_ms(a, &Failure::Network).is_some())
                .count();
        assert_eq!(attempts as u32, MAX_ATTEMPTS);

        assert!(keeps_refreshing(&Phase::Failed(Failure::Network)));
        assert!(keeps_refreshing(&Phase::Loading));
        assert!(!keeps_refreshing(&Phase::Failed(Failure::Unauthorized)));
        assert!(!keeps_refreshing(&Phase::Failed(Failure::NotFound)));
    }
}
