//! Bundles: a SKU with no stock of its own, made of components. Reserving or
//! selling a bundle reserves or sells its components; its availability is the
//! minimum over components of floor(available / qty).
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::ids::Sku;
use crate::stock::{Qty, MAX_LINE_QTY};

/// Most components in one bundle.
pub const MAX_COMPONENTS: usize = 32;

/// One component of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Component {
    pub sku: Sku,
    pub qty: Qty,
}

/// A validated bundle: 1 to [`MAX_COMPONENTS`] distinct components, none of
/// them the bundle itself, each 1 to [`MAX_LINE_QTY`] units. Components are
/// kept in SKU order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bundle {
    sku: Sku,
    components: Vec<Component>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleError {
    NoComponents,
    TooManyComponents {
        max: usize,
    },
    QtyOutOfRange {
        sku: Sku,
        qty: Qty,
    },
    DuplicateComponent {
        sku: Sku,
    },
    ContainsItself,
    /// A bundle among the components (nesting is not supported).
    NestedBundle {
        sku: Sku,
    },
    /// The expanded quantity of a component passes [`MAX_LINE_QTY`].
    TooManyUnits {
        sku: Sku,
        qty: Qty,
    },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::NoComponents => f.write_str("a bundle needs at least one component"),
            BundleError::TooManyComponents { max } => {
                write!(f, "a bundle has at most {max} components")
            }
            BundleError::QtyOutOfRange { sku, qty } => {
                write!(
                    f,
                    "component {sku}: quantity {qty} is outside 1..={MAX_LINE_QTY}"
                )
            }
            BundleError::DuplicateComponent { sku } => write!(f, "component {sku} is listed twice"),
            BundleError::ContainsItself => f.write_str("a bundle cannot contain itself"),
            BundleError::NestedBundle { sku } => write!(f, "component {sku} is itself a bundle"),
            BundleError::TooManyUnits { sku, qty } => {
                write!(
                    f,
                    "component {sku} would need {qty} units, over {MAX_LINE_QTY}"
                )
            }
        }
    }
}

impl Bundle {
    pub fn new(sku: Sku, mut components: Vec<Component>) -> Result<Bundle, BundleError> {
        if components.is_empty() {
            return Err(BundleError::NoComponents);
        }
        if components.len() > MAX_COMPONENTS {
            return Err(BundleError::TooManyComponents {
                max: MAX_COMPONENTS,
            });
        }
        for c in &components {
            if !(1..=MAX_LINE_QTY).contains(&c.qty) {
                return Err(BundleError::QtyOutOfRange {
                    sku: c.sku.clone(),
                    qty: c.qty,
                });
            }
            if c.sku == sku {
                return Err(BundleError::ContainsItself);
            }
        }
        components.sort_by(|a, b| a.sku.cmp(&b.sku));
        for w in components.windows(2) {
            if w[0].sku == w[1].sku {
                return Err(BundleError::DuplicateComponent {
                    sku: w[0].sku.clone(),
                });
            }
        }
        Ok(Bundle { sku, components })
    }

    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The component lines for `qty` bundles.
    pub fn expand(&self, qty: Qty) -> Result<Vec<(Sku, Qty)>, BundleError> {
        if !(0..=MAX_LINE_QTY).contains(&qty) {
            return Err(BundleError::QtyOutOfRange {
                sku: self.sku.clone(),
                qty,
            });
        }
        self.components
            .iter()
            .map(|c| {
                let n = c.qty.saturating_mul(qty);
                if n > MAX_LINE_QTY {
                    Err(BundleError::TooManyUnits {
                        sku: c.sku.clone(),
                        qty: n,
                    })
                } else {
                    Ok((c.sku.clone(), n))
                }
            })
            .collect()
    }

    /// How many bundles the components' availability makes: the minimum over
    /// components of floor(available / qty), never below zero.
    pub fn available(&self, mut available: impl FnMut(&Sku) -> Qty) -> Qty {
        self.components
            .iter()
            .map(|c| available(&c.sku).max(0) / c.qty)
            .min()
            .unwrap_or(0)
    }
}

/// Expands order or cart lines that may name bundles into component lines,
/// merged per SKU, in SKU order. Bundles do not nest.
pub fn expand_lines(
    lines: &[(Sku, Qty)],
    bundles: &BTreeMap<Sku, Bundle>,
) -> Result<Vec<(Sku, Qty)>, BundleError> {
    let mut out: BTreeMap<Sku, Qty> = BTreeMap::new();
    for (sku, qty) in lines {
        match bundles.get(sku) {
            Some(b) => {
                for (c, n) in b.expand(*qty)? {
                    if bundles.contains_key(&c) {
                        return Err(BundleError::NestedBundle { sku: c });
                    }
                    *out.entry(c).or_insert(0) += n;
                }
            }
            None => {
                if !(0..=MAX_LINE_QTY).contains(qty) {
                    return Err(BundleError::QtyOutOfRange {
                        sku: sku.clone(),
                        qty: *qty,
                    });
                }
                *out.entry(sku.clone()).or_insert(0) += qty;
            }
        }
    }
    for (sku, qty) in &out {
        if *qty > MAX_LINE_QTY {
            return Err(BundleError::TooManyUnits {
                sku: sku.clone(),
                qty: *qty,
            });
        }
    }
    Ok(out.into_iter().collect())
}
