//! Messages to the `Catalog` object and the catalog's types.
use std::collections::BTreeMap;

use omnistock_core::{LocationId, Sku};
use serde::{Deserialize, Serialize};

use super::Idem;
use crate::http::Problem;

/// The name of the one `Catalog` object.
pub const CATALOG_NAME: &str = "catalog";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    Store,
    Warehouse,
}

/// A location as stored and returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub id: LocationId,
    pub name: String,
    pub kind: LocationKind,
    pub lat: f64,
    pub lon: f64,
    pub ships_online: bool,
    pub pickup: bool,
}

impl Location {
    /// The location as core's fulfillment rules see it.
    pub fn site(&self) -> omnistock_core::fulfillment::Site {
        omnistock_core::fulfillment::Site {
            id: self.id.clone(),
            point: omnistock_core::fulfillment::GeoPoint::from_degrees(self.lat, self.lon)
                .unwrap_or(omnistock_core::fulfillment::GeoPoint {
                    lat_e6: 0,
                    lon_e6: 0,
                }),
            ships_online: self.ships_online,
            pickup: self.pickup,
        }
    }
}

/// Money: a decimal string and an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount: String,
    pub currency: String,
}

impl Money {
    pub fn validate(&self, what: &str) -> Result<(), Problem> {
        let ok_amount = self
            .amount
            .parse::<rust_decimal::Decimal>()
            .map(|d| !d.is_sign_negative() && d.scale() <= 4 && self.amount.len() <= 24)
            .unwrap_or(false)
            && self.amount.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !ok_amount {
            return Err(Problem::invalid(format!(
                "{what}.amount must be a non-negative decimal string like \"19.90\""
            )));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Problem::invalid(format!(
                "{what}.currency must be an ISO 4217 code like \"EUR\""
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub sku: Sku,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub price: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_code: Option<String>,
    /// A price per channel, where it differs from `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_prices: Option<ChannelPrices>,
    /// The "was" price a storefront shows struck through (when above the price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_at_price: Option<Money>,
    /// Price changes still to come, each taking effect at its time (core's
    /// `pricing`); the catalog's alarm folds each into the fields above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduled_prices: Vec<ScheduledPrice>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPrices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<Money>,
}

/// A price change at a time: `channel` absent changes every channel's price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledPrice {
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<omnistock_core::stock::Channel>,
    pub price: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_at_price: Option<Money>,
}

/// A variant's (or a bundle's) price fields, as core's price book.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceFields {
    pub price: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_prices: Option<ChannelPrices>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_at_price: Option<Money>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduled_prices: Vec<ScheduledPrice>,
}

fn core_money(m: &Money, what: &str) -> Result<omnistock_core::money::Money, Problem> {
    m.validate(what)?;
    omnistock_core::money::Money::parse(&m.amount, &m.currency)
        .map_err(|e| Problem::invalid(format!("{what}: {e}")))
}

fn wire_money(m: &omnistock_core::money::Money) -> Money {
    Money {
        amount: m.amount.to_string(),
        currency: m.currency.as_str().to_string(),
    }
}

impl PriceFields {
    /// Checked and converted (`what` names the variant in errors).
    pub fn book(&self, what: &str) -> Result<omnistock_core::pricing::PriceBook, Problem> {
        use omnistock_core::pricing::{PriceBook, MAX_SCHEDULED};
        if self.scheduled_prices.len() > MAX_SCHEDULED {
            return Err(Problem::invalid(format!(
                "{what}.scheduled_prices: at most {MAX_SCHEDULED} changes"
            )));
        }
        let opt = |m: &Option<Money>, w: &str| m.as_ref().map(|m| core_money(m, w)).transpose();
        let cp = self.channel_prices.clone().unwrap_or_default();
        let mut scheduled = Vec::with_capacity(self.scheduled_prices.len());
        for (i, s) in self.scheduled_prices.iter().enumerate() {
            let w = format!("{what}.scheduled_prices[{i}]");
            let at = crate::http::parse_rfc3339(&s.at)
                .ok_or_else(|| Problem::invalid(format!("{w}.at must be an RFC 3339 time")))?;
            scheduled.push(omnistock_core::pricing::ScheduledPrice {
                at: omnistock_core::time::Timestamp(at),
                channel: s.channel,
                price: core_money(&s.price, &format!("{w}.price"))?,
                compare_at: opt(&s.compare_at_price, &format!("{w}.compare_at_price"))?,
            });
        }
        let book = PriceBook {
            price: core_money(&self.price, &format!("{what}.price"))?,
            online: opt(&cp.online, &format!("{what}.channel_prices.online"))?,
            pos: opt(&cp.pos, &format!("{what}.channel_prices.pos"))?,
            compare_at: opt(&self.compare_at_price, &format!("{what}.compare_at_price"))?,
            scheduled,
        };
        book.validate()
            .map_err(|e| Problem::invalid(format!("{what}: {e}")))?;
        Ok(book)
    }

    /// The fields of a (settled) book.
    pub fn from_book(b: &omnistock_core::pricing::PriceBook) -> PriceFields {
        let cp = ChannelPrices {
            online: b.online.as_ref().map(wire_money),
            pos: b.pos.as_ref().map(wire_money),
        };
        PriceFields {
            price: wire_money(&b.price),
            channel_prices: (cp != ChannelPrices::default()).then_some(cp),
            compare_at_price: b.compare_at.as_ref().map(wire_money),
            scheduled_prices: b
                .scheduled
                .iter()
                .map(|s| ScheduledPrice {
                    at: crate::http::rfc3339(s.at.0),
                    channel: s.channel,
                    price: wire_money(&s.price),
                    compare_at_price: s.compare_at.as_ref().map(wire_money),
                })
                .collect(),
        }
    }

    /// The price `channel` charges at `now`.
    pub fn in_force(
        &self,
        channel: omnistock_core::stock::Channel,
        now: i64,
        what: &str,
    ) -> Result<omnistock_core::pricing::InForce, Problem> {
        Ok(self
            .book(what)?
            .in_force(channel, omnistock_core::time::Timestamp(now)))
    }
}

impl Variant {
    pub fn prices(&self) -> PriceFields {
        PriceFields {
            price: self.price.clone(),
            channel_prices: self.channel_prices.clone(),
            compare_at_price: self.compare_at_price.clone(),
            scheduled_prices: self.scheduled_prices.clone(),
        }
    }

    pub fn set_prices(&mut self, p: PriceFields) {
        self.price = p.price;
        self.channel_prices = p.channel_prices;
        self.compare_at_price = p.compare_at_price;
        self.scheduled_prices = p.scheduled_prices;
    }

    /// Folds the scheduled changes due by `now` into the fields; the time
    /// of the next change still to come.
    pub fn settle(&mut self, now: i64) -> Result<Option<i64>, Problem> {
        let mut book = self.prices().book(self.sku.as_str())?;
        if book.settle(omnistock_core::time::Timestamp(now)) {
            self.set_prices(PriceFields::from_book(&book));
        }
        Ok(book.next_change().map(|t| t.0))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    pub variants: Vec<Variant>,
}

/// A SKU as looked up: its variant and product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkuInfo {
    pub sku: Sku,
    pub product_id: String,
    pub title: String,
    pub variant: Variant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleComponent {
    pub sku: Sku,
    pub qty: i64,
}

impl BundleComponent {
    pub fn to_core(&self) -> omnistock_core::bundle::Component {
        omnistock_core::bundle::Component {
            sku: self.sku.clone(),
            qty: self.qty,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub sku: Sku,
    pub title: String,
    pub price: Money,
    pub components: Vec<BundleComponent>,
}

/// A bundle's wire components as core's validated bundle (refusals are 400).
pub fn core_bundle(
    sku: &Sku,
    components: &[BundleComponent],
) -> Result<omnistock_core::bundle::Bundle, Problem> {
    Ok(omnistock_core::bundle::Bundle::new(
        sku.clone(),
        components.iter().map(BundleComponent::to_core).collect(),
    )?)
}

/// What a stock request needs to know of a SKU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkuFact {
    /// A product variant: it has stock.
    Item,
    /// A bundle: no stock of its own, these components.
    Bundle { components: Vec<BundleComponent> },
    /// Not in the catalog.
    Missing,
}

/// The facts stock requests need: these SKUs and barcodes, and every location.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FactsRequest {
    pub skus: Vec<Sku>,
    #[serde(default)]
    pub barcodes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FactsAnswer {
    pub skus: Vec<(Sku, SkuFact)>,
    /// Each barcode asked for and the SKU it names, if any.
    pub barcodes: Vec<(String, Option<Sku>)>,
    /// Every location, in id order.
    pub locations: Vec<Location>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListProducts {
    pub query: Option<String>,
    pub cursor: Option<String>,
    pub limit: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub next_cursor: Option<String>,
}

/// The answer to a catalog write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutAnswer<T> {
    pub created: bool,
    /// The same Idempotency-Key and request again: this is the first answer.
    #[serde(default)]
    pub replayed: bool,
    pub item: T,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CatalogRequest {
    PutLocation {
        location: Location,
        idem: Idem,
    },
    ListLocations,
    PutProduct {
        product: Product,
        idem: Idem,
    },
    GetProduct {
        id: String,
    },
    ListProducts(ListProducts),
    GetSku {
        sku: Sku,
    },
    GetBarcode {
        barcode: String,
    },
    Facts(FactsRequest),
    PutBundle {
        bundle: Bundle,
        idem: Idem,
    },
    GetBundle {
        sku: Sku,
    },
    /// The catalog price and tax code of each SKU (a variant's, or a
    /// bundle's price with no code); `None` for an unknown SKU. Orders price
    /// their lines with it.
    Prices {
        skus: Vec<Sku>,
    },
    /// Receipts (issue 14): title, options, price and tax code of each SKU
    /// (a variant, or a bundle: its title and price); `None` for an unknown
    /// SKU. At most 2 x MAX_LINES SKUs are answered.
    Describe {
        skus: Vec<Sku>,
    },
    /// A catalog import's dry run: who owns these SKUs and barcodes now,
    /// and the import id kept under the POST's Idempotency-Key (`id` is
    /// kept when the key is new; a replay answers the first id).
    ImportCheck {
        idem: Idem,
        id: String,
        skus: Vec<String>,
        barcodes: Vec<String>,
    },
}

/// The answer to [`CatalogRequest::ImportCheck`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportCheckAnswer {
    pub id: String,
    pub replayed: bool,
    pub existing: omnistock_core::catalog_import::Existing,
}

/// What a receipt prints of a SKU (the answer to `Describe`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Described {
    pub title: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub price: Money,
    #[serde(default)]
    pub tax_code: Option<String>,
}

/// A SKU's price as the catalog states it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceFact {
    #[serde(flatten)]
    pub prices: PriceFields,
    #[serde(default)]
    pub tax_code: Option<String>,
}
