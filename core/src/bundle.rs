//! Bundles: a SKU with no stock of its own, made of components. Reserving or
//! selling a bundle reserves or sells its components; its availability is the
//! minimum over components of floor(available / qty).
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::ids::Sku;
use crate::stock::{Qty, MAX_LINE_QTY};

/// Most components in one bundle (the API's most lines in one request).
pub const MAX_COMPONENTS: usize = 100;

/// One component of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Component {
    pub sku: Sku,
    pub qty: Qty,
}

/// A validated bundle: 1 to [`MAX_COMPONENTS`] distinct components, none of
/// them the bundle itself, each 1 to [`MAX_LINE_QTY`] units. Components are
/// kept in the order given.
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
    pub fn new(sku: Sku, components: Vec<Component>) -> Result<Bundle, BundleError> {
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
        let mut sorted: Vec<&Sku> = components.iter().map(|c| &c.sku).collect();
        sorted.sort();
        for w in sorted.windows(2) {
            if w[0] == w[1] {
                return Err(BundleError::DuplicateComponent { sku: w[0].clone() });
            }
        }
        Ok(Bundle { sku, components })
    }

    /// Refuses a bundle with a bundle among its components (`is_bundle` says
    /// which SKUs are bundles): bundles do not nest.
    pub fn check_not_nested(
        &self,
        mut is_bundle: impl FnMut(&Sku) -> bool,
    ) -> Result<(), BundleError> {
        match self.components.iter().find(|c| is_bundle(&c.sku)) {
            Some(c) => Err(BundleError::NestedBundle { sku: c.sku.clone() }),
            None => Ok(()),
        }
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
/// merged per SKU, in the order each SKU first appears (a bundle's
/// components in the bundle's order). Bundles do not nest.
pub fn expand_lines(
    lines: &[(Sku, Qty)],
    bundles: &BTreeMap<Sku, Bundle>,
) -> Result<Vec<(Sku, Qty)>, BundleError> {
    let mut out: Vec<(Sku, Qty)> = Vec::new();
    let mut index: BTreeMap<Sku, usize> = BTreeMap::new();
    let mut add = |sku: Sku, qty: Qty| match index.get(&sku) {
        Some(&i) => out[i].1 += qty,
        None => {
            index.insert(sku.clone(), out.len());
            out.push((sku, qty));
        }
    };
    for (sku, qty) in lines {
        match bundles.get(sku) {
            Some(b) => {
                b.check_not_nested(|c| bundles.contains_key(c))?;
                for (c, n) in b.expand(*qty)? {
                    add(c, n);
                }
            }
            None => {
                if !(0..=MAX_LINE_QTY).contains(qty) {
                    return Err(BundleError::QtyOutOfRange {
                        sku: sku.clone(),
                        qty: *qty,
                    });
                }
                add(sku.clone(), *qty);
            }
        }
    }
    if let Some((sku, qty)) = out.iter().find(|(_, q)| *q > MAX_LINE_QTY) {
        return Err(BundleError::TooManyUnits {
            sku: sku.clone(),
            qty: *qty,
        });
    }
    Ok(out)
}
