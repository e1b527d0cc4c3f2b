//! The availability answer of API.md, reduced to what the widget shows.
//!
//! `GET /v1/availability` answers
//! `{as_of, items: [{sku, location, on_hand, reserved, committed, unavailable,
//! safety_stock, incoming, available, version}]}`; without a `location` filter it
//! lists every location plus a `total` row. The widget reads `sku`, `location`,
//! `available` and, when the server sends it, `location_name` (the location's
//! display name, "Downtown"), and ignores the rest (and any fields added later).

use serde::Deserialize;

/// The `location` of the row that sums every location.
pub const TOTAL_LOCATION: &str = "total";
/// At most this many rows are read from one answer (API.md allows 100 SKUs per read;
/// one SKU has far fewer locations). More is a bad answer, not a reason to allocate.
pub const MAX_ROWS: usize = 10_000;
/// Bodies larger than this are not parsed.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One SKU at one location (or the total).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Row {
    pub sku: String,
    /// `None` or `"total"` for the total row.
    #[serde(default)]
    pub location: Option<String>,
    /// The location's display name, when the server sends one.
    #[serde(default)]
    pub location_name: Option<String>,
    /// `store` or `warehouse`, when the server says (older servers: unknown, read as a store).
    #[serde(default)]
    pub location_kind: Option<String>,
    /// A store that offers pickup.
    #[serde(default)]
    pub pickup: Option<bool>,
    pub available: i64,
}

impl Row {
    pub fn is_total(&self) -> bool {
        self.location.as_deref().is_none_or(|l| l == TOTAL_LOCATION)
    }

    /// A warehouse: it sells online, it is not a store a shopper can visit.
    pub fn is_warehouse(&self) -> bool {
        self.location_kind.as_deref() == Some("warehouse")
    }

    /// How to name this row's location in text: its display name, else its id.
    pub fn place(&self) -> Option<&str> {
        self.location_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .or(self.location.as_deref())
    }
}

/// The rows of one answer, in the order the server sent them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Availability {
    #[serde(default)]
    pub as_of: Option<String>,
    pub items: Vec<Row>,
}

/// The answer was not the JSON of API.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadResponse;

impl Availability {
    pub fn parse(body: &str) -> Result<Availability, BadResponse> {
        if body.len() > MAX_BODY_BYTES {
            return Err(BadResponse);
        }
        let parsed: Availability = serde_json::from_str(body).map_err(|_| BadResponse)?;
        if parsed.items.len() > MAX_ROWS {
            return Err(BadResponse);
        }
        Ok(parsed)
    }

    /// Rows for `sku` at real locations (not the total).
    pub fn locations<'a>(&'a self, sku: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        self.items
            .iter()
            .filter(move |r| r.sku == sku && !r.is_total())
    }

    /// The row for `sku` at `location`, if the server sent one.
    pub fn row(&self, sku: &str, location: &str) -> Option<&Row> {
        self.items
            .iter()
            .find(|r| r.sku == sku && !r.is_total() && r.location.as_deref() == Some(location))
    }

    /// Units available for `sku` at `location`; a location with no row has none.
    pub fn at(&self, sku: &str, location: &str) -> i64 {
        self.row(sku, location).map_or(0, |r| r.available)
    }

    /// Units available for `sku` everywhere: the total row, else the sum of the
    /// location rows (saturating: a hostile answer must not overflow).
    pub fn total(&self, sku: &str) -> i64 {
        match self.items.iter().find(|r| r.sku == sku && r.is_total()) {
            Some(r) => r.available,
            None => self
                .locations(sku)
                .fold(0i64, |acc, r| acc.saturating_add(r.available.max(0))),
        }
    }

    /// Sets one location's figure, as a live update (`{sku, location, available, seq}`)
    /// will. The total row, if any, moves by the same difference.
    pub fn set_available(&mut self, sku: &str, location: &str, available: i64) {
        let before = self.at(sku, location);
        match self
            .items
            .iter_mut()
            .find(|r| r.sku == sku && !r.is_total() && r.location.as_deref() == Some(location))
        {
            Some(row) => row.available = available,
            None => self.items.push(Row {
                sku: sku.into(),
                location: Some(location.into()),
                location_name: None,
                location_kind: None,
                pickup: None,
                available,
            }),
        }
        if let Some(total) = self.items.iter_mut().find(|r| r.sku == sku && r.is_total()) {
            total.available = total
                .available
                .saturating_add(available.saturating_sub(before));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, in Node, under wasm-bindgen-test
    // (`make widget-unit`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ANSWER: &str = r#"{
      "as_of": "2026-11-26T14:00:00Z",
      "items": [
        {"sku": "TEE", "location": "store-1", "location_name": "Downtown", "on_hand": 5, "reserved": 1, "committed": 0,
         "unavailable": {"damaged": 0, "quality_control": 0}, "safety_stock": 0,
         "incoming": 0, "available": 4, "version": 3},
        {"sku": "TEE", "location": "store-2", "available": 0, "version": 1},
        {"sku": "TEE", "location": "warehouse-1", "available": 9, "version": 7},
        {"sku": "TEE", "location": "total", "available": 13, "version": 0, "extra": true}
      ]
    }"#;

    #[test]
    fn parses_the_api_row_and_ignores_other_fields() {
        let a = Availability::parse(ANSWER).unwrap();
        assert_eq!(a.as_of.as_deref(), Some("2026-11-26T14:00:00Z"));
        assert_eq!(a.items.len(), 4);
        assert_eq!(a.at("TEE", "store-1"), 4);
        assert_eq!(a.at("TEE", "store-9"), 0);
        assert_eq!(a.at("OTHER", "store-1"), 0);
        assert_eq!(a.total("TEE"), 13);
        assert_eq!(a.locations("TEE").count(), 3);
        assert_eq!(a.row("TEE", "store-1").unwrap().place(), Some("Downtown"));
        assert_eq!(a.row("TEE", "store-2").unwrap().place(), Some("store-2"));
    }

    #[test]
    fn total_without_a_total_row_sums_the_locations() {
        let a = Availability::parse(
            r#"{"items":[{"sku":"A","location":"s1","available":2},
                         {"sku":"A","location":"s2","available":-1},
                         {"sku":"A","location":"s3","available":5}]}"#,
        )
        .unwrap();
        assert_eq!(a.total("A"), 7);
        let a = Availability::parse(r#"{"items":[{"sku":"A","location":null,"available":8}]}"#)
            .unwrap();
        assert_eq!(a.total("A"), 8);
        assert_eq!(a.locations("A").count(), 0);
    }

    #[test]
    fn bad_answers_are_rejected() {
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"items": 3}"#,
            r#"{"items":[{"sku":"A","location":"s","available":"3"}]}"#,
            r#"{"items":[{"sku":"A","location":"s","available":1.5}]}"#,
            r#"{"items":[{"location":"s","available":1}]}"#,
            r#"{"type":"about:blank","title":"Unauthorized","status":401,"code":"unauthorized"}"#,
        ] {
            assert_eq!(Availability::parse(bad), Err(BadResponse), "{bad}");
        }
        let huge = format!(r#"{{"items":[],"pad":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(Availability::parse(&huge), Err(BadResponse));
    }

    #[test]
    fn live_updates_move_the_location_and_the_total() {
        let mut a = Availability::parse(ANSWER).unwrap();
        a.set_available("TEE", "store-1", 1);
        assert_eq!(a.at("TEE", "store-1"), 1);
        assert_eq!(a.total("TEE"), 10);
        a.set_available("TEE", "store-3", 2);
        assert_eq!(a.at("TEE", "store-3"), 2);
        assert_eq!(a.total("TEE"), 12);
    }
}
