//! Catalog import: a CSV file (Shopify's product export, or omnistock's own
//! columns) parsed into products, and the cleaning report that says, per row
//! and line number, what is wrong before anything is written.
//!
//! Pure: [`parse`] reads bytes, [`check`] compares the parsed file with a
//! naming rule, the asked location and what the catalog already holds
//! ([`Existing`], fetched by the caller), [`plan`] says what an apply writes.
//! Nothing here panics on input; every limit is a constant below.
//!
//! omnistock's own CSV (header row required, any column order, unknown
//! columns are noted and ignored):
//! `product_id,title,sku,barcode,option1_name,option1_value,option2_name,`
//! `option2_value,option3_name,option3_value,price,compare_at_price,taxable,qty`.
//! Rows with the same `product_id` are one product (title and option names
//! from its first row). Shopify's export: rows sharing a `Handle` are one
//! product; `Title` and `OptionN Name` come from its first row; rows with no
//! variant data (image rows) are skipped.
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{LocationId, Sku};

/// Most data rows in one file.
pub const MAX_ROWS: usize = 20_000;
/// Most columns in one row.
pub const MAX_COLUMNS: usize = 200;
/// Most bytes in one field.
pub const MAX_FIELD_BYTES: usize = 8_192;
/// Most variants in one product (as `PUT /v1/products/{id}` allows).
pub const MAX_VARIANTS: usize = 100;
/// Most problems kept in a report (the summary still counts them all).
pub const MAX_PROBLEMS: usize = 10_000;
/// Most units one row may import as a receipt.
pub const MAX_QTY: i64 = 1_000_000;
/// A title's hard limit (a title past it is an error, not a convention).
pub const MAX_TITLE_CHARS: usize = 200;

/// Why a file could not be read at all (the report covers everything else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportError {
    Empty,
    NotUtf8 { line: u32 },
    TooManyRows,
    TooManyColumns { line: u32 },
    FieldTooLong { line: u32 },
    UnknownFormat,
    MissingColumn(&'static str),
}

impl core::fmt::Display for ImportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImportError::Empty => write!(f, "the file has no header row"),
            ImportError::NotUtf8 { line } => write!(f, "line {line} is not UTF-8"),
            ImportError::TooManyRows => write!(f, "more than {MAX_ROWS} data rows"),
            ImportError::TooManyColumns { line } => {
                write!(f, "line {line} has more than {MAX_COLUMNS} columns")
            }
            ImportError::FieldTooLong { line } => {
                write!(f, "line {line} has a field over {MAX_FIELD_BYTES} bytes")
            }
            ImportError::UnknownFormat => write!(
                f,
                "the header is neither Shopify's product export (Handle, Title, Variant SKU...) \
                 nor omnistock's (product_id, title, sku...)"
            ),
            ImportError::MissingColumn(c) => write!(f, "the header lacks the column {c}"),
        }
    }
}

/// One CSV record and the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub line: u32,
    pub fields: Vec<String>,
}

fn line_at(bytes: &[u8], from: usize, to: usize, line: &mut u32) {
    let n = bytes
        .get(from..to)
        .map(|s| s.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0);
    *line = line.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Reads CSV records (RFC 4180 quoting, CRLF or LF, a UTF-8 BOM skipped).
pub fn read_records(bytes: &[u8], max_rows: usize) -> Result<Vec<Record>, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv_core::Reader::new();
    let mut out: Vec<u8> = vec![0; 1024];
    let mut ends: Vec<usize> = vec![0; 32];
    let mut records = Vec::new();
    let mut pos = 0usize; // bytes consumed
    let mut line = 1u32; // line of byte `pos`
    let mut counted = 0usize; // newlines counted up to here
                              // Each call consumes input or grows a bounded buffer or ends a record.
    let max_calls = bytes.len().saturating_mul(2).saturating_add(1_000);
    let mut calls = 0usize;
    'records: loop {
        // The record starts at its first byte that is not a line break.
        let mut start = pos;
        while matches!(bytes.get(start), Some(b'\n') | Some(b'\r')) {
            start += 1;
        }
        line_at(bytes, counted, start, &mut line);
        counted = start;
        let rec_line = line;
        let (mut nout, mut nend) = (0usize, 0usize);
        loop {
            calls += 1;
            if calls > max_calls {
                return Err(ImportError::FieldTooLong { line: rec_line });
            }
            let input = bytes.get(pos..).unwrap_or(&[]);
            let (res, nin, o, e) = rdr.read_record(
                input,
                out.get_mut(nout..).unwrap_or(&mut []),
                ends.get_mut(nend..).unwrap_or(&mut []),
            );
            pos += nin;
            nout += o;
            nend += e;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    if out.len() >= MAX_FIELD_BYTES * 4 {
                        return Err(ImportError::FieldTooLong { line: rec_line });
                    }
                    out.resize(out.len() * 2, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if ends.len() >= MAX_COLUMNS {
                        return Err(ImportError::TooManyColumns { line: rec_line });
                    }
                    let n = (ends.len() * 2).min(MAX_COLUMNS);
                    ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    let mut fields = Vec::with_capacity(nend);
                    let mut from = 0usize;
                    for &end in ends.get(..nend).unwrap_or(&[]) {
                        let raw = out.get(from..end).unwrap_or(&[]);
                        if raw.len() > MAX_FIELD_BYTES {
                            return Err(ImportError::FieldTooLong { line: rec_line });
                        }
                        let s = core::str::from_utf8(raw)
                            .map_err(|_| ImportError::NotUtf8 { line: rec_line })?;
                        fields.push(s.to_string());
                        from = end;
                    }
                    if records.len() > max_rows {
                        return Err(ImportError::TooManyRows);
                    }
                    records.push(Record {
                        line: rec_line,
                        fields,
                    });
                    continue 'records;
                }
                csv_core::ReadRecordResult::End => break 'records,
            }
        }
    }
    Ok(records)
}

/// Which columns the file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Shopify,
    Omnistock,
}

/// One variant row as read (raw strings; [`check`] judges them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIn {
    pub line: u32,
    pub sku: String,
    pub barcode: String,
    /// Option values in option order (empty when not given).
    pub option_values: Vec<String>,
    pub price: String,
    pub compare_at_price: String,
    pub taxable: String,
    pub qty: String,
}

/// Rows that share a handle (Shopify) or product id (omnistock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductIn {
    pub id: String,
    pub line: u32,
    pub title: String,
    pub option_names: Vec<String>,
    pub rows: Vec<RowIn>,
}

/// The file, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    pub format: Format,
    /// Data rows read (image-only rows included).
    pub data_rows: u32,
    /// Columns present and ignored.
    pub ignored_columns: Vec<String>,
    /// Lines of rows skipped for holding no variant (Shopify image rows).
    pub skipped_lines: Vec<u32>,
    pub products: Vec<ProductIn>,
}

struct Columns {
    id: usize,
    title: usize,
    sku: usize,
    barcode: Option<usize>,
    opt_names: [Option<usize>; 3],
    opt_values: [Option<usize>; 3],
    price: Option<usize>,
    compare_at: Option<usize>,
    taxable: Option<usize>,
    qty: Option<usize>,
}

const SHOPIFY: [&str; 14] = [
    "Handle",
    "Title",
    "Variant SKU",
    "Variant Barcode",
    "Option1 Name",
    "Option2 Name",
    "Option3 Name",
    "Option1 Value",
    "Option2 Value",
    "Option3 Value",
    "Variant Price",
    "Variant Compare At Price",
    "Variant Taxable",
    "Variant Inventory Qty",
];
const OMNISTOCK: [&str; 14] = [
    "product_id",
    "title",
    "sku",
    "barcode",
    "option1_name",
    "option2_name",
    "option3_name",
    "option1_value",
    "option2_value",
    "option3_value",
    "price",
    "compare_at_price",
    "taxable",
    "qty",
];

fn columns(header: &[String], names: &[&'static str; 14]) -> Result<Columns, ImportError> {
    let find = |n: &str| header.iter().position(|h| h.trim() == n);
    let need = |i: usize| find(names[i]).ok_or(ImportError::MissingColumn(names[i]));
    Ok(Columns {
        id: need(0)?,
        title: need(1)?,
        sku: need(2)?,
        barcode: find(names[3]),
        opt_names: [find(names[4]), find(names[5]), find(names[6])],
        opt_values: [find(names[7]), find(names[8]), find(names[9])],
        price: find(names[10]),
        compare_at: find(names[11]),
        taxable: find(names[12]),
        qty: find(names[13]),
    })
}

fn field(r: &Record, i: Option<usize>) -> String {
    i.and_then(|i| r.fields.get(i))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Parses a CSV file into products. Errors only when the file cannot be
/// read as a table at all; every row-level fault is left to [`check`].
pub fn parse(bytes: &[u8]) -> Result<Parsed, ImportError> {
    let records = read_records(bytes, MAX_ROWS)?;
    let Some((header, data)) = records.split_first() else {
        return Err(ImportError::Empty);
    };
    let is = |n: &str| header.fields.iter().any(|h| h.trim() == n);
    let (format, names) = if is("Handle") {
        (Format::Shopify, &SHOPIFY)
    } else if is("product_id") {
        (Format::Omnistock, &OMNISTOCK)
    } else {
        return Err(ImportError::UnknownFormat);
    };
    let cols = columns(&header.fields, names)?;
    let ignored_columns = header
        .fields
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty() && !names.contains(h))
        .map(ToString::to_string)
        .collect();
    let mut products: Vec<ProductIn> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut skipped_lines = Vec::new();
    for r in data {
        let id = field(r, Some(cols.id));
        let row = RowIn {
            line: r.line,
            sku: field(r, Some(cols.sku)),
            barcode: field(r, cols.barcode),
            // Option values keep their spacing: "Black " is a finding.
            option_values: cols
                .opt_values
                .iter()
                .map(|c| c.and_then(|i| r.fields.get(i)).cloned().unwrap_or_default())
                .collect(),
            price: field(r, cols.price),
            compare_at_price: field(r, cols.compare_at),
            taxable: field(r, cols.taxable),
            qty: field(r, cols.qty),
        };
        let has_variant = !row.sku.is_empty()
            || !row.barcode.is_empty()
            || !row.price.is_empty()
            || row.option_values.iter().any(|v| !v.trim().is_empty());
        let at = match index.get(&id) {
            Some(&i) => i,
            None => {
                if !has_variant && format == Format::Shopify {
                    skipped_lines.push(r.line);
                    continue;
                }
                products.push(ProductIn {
                    id: id.clone(),
                    line: r.line,
                    title: field(r, Some(cols.title)),
                    option_names: cols.opt_names.iter().map(|c| field(r, *c)).collect(),
                    rows: Vec::new(),
                });
                index.insert(id, products.len() - 1);
                products.len() - 1
            }
        };
        if !has_variant {
            skipped_lines.push(r.line);
            continue;
        }
        if let Some(p) = products.get_mut(at) {
            if p.title.is_empty() {
                p.title = field(r, Some(cols.title));
            }
            p.rows.push(row);
        }
    }
    Ok(Parsed {
        format,
        data_rows: u32::try_from(data.len()).unwrap_or(u32::MAX),
        ignored_columns,
        skipped_lines,
        products,
    })
}

/// Is `s` a GTIN-8, -12, -13 or -14 with a right check digit?
pub fn gtin_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if !matches!(b.len(), 8 | 12 | 13 | 14) || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Some((check, body)) = b.split_last() else {
        return false;
    };
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check - b'0')
}

/// The naming convention titles should follow (warnings, not errors).
/// Written `max_len=60;forbid=<>|;capitalized=true` (every part optional).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamingRule {
    pub max_len: usize,
    pub forbidden: String,
    pub capitalized: bool,
}

impl Default for NamingRule {
    fn default() -> Self {
        NamingRule {
            max_len: 80,
            forbidden: "<>|{}".to_string(),
            capitalized: true,
        }
    }
}

impl NamingRule {
    /// Parses the rule's text; an unknown or bad part is an error message.
    pub fn parse(s: &str) -> Result<NamingRule, String> {
        let mut r = NamingRule::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("naming rule part {part:?} is not key=value"))?;
            match k.trim() {
                "max_len" => {
                    r.max_len = v
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_TITLE_CHARS).contains(n))
                        .ok_or_else(|| format!("max_len must be 1..={MAX_TITLE_CHARS}"))?
                }
                "forbid" => r.forbidden = v.chars().take(64).collect(),
                "capitalized" => {
                    r.capitalized = match v.trim() {
                        "true" => true,
                        "false" => false,
                        _ => return Err("capitalized must be true or false".to_string()),
                    }
                }
                other => return Err(format!("unknown naming rule key {other:?}")),
            }
        }
        Ok(r)
    }

    /// Why `title` breaks the rule, if it does.
    pub fn check(&self, title: &str) -> Option<String> {
        let n = title.chars().count();
        if n > self.max_len {
            return Some(format!(
                "title has {n} characters; the convention allows {}",
                self.max_len
            ));
        }
        if let Some(c) = title.chars().find(|c| self.forbidden.contains(*c)) {
            return Some(format!(
                "title contains {c:?}, which the convention forbids"
            ));
        }
        if self.capitalized && title.chars().next().is_some_and(|c| c.is_lowercase()) {
            return Some("title should start with a capital letter".to_string());
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a report row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    InvalidProductId,
    MissingTitle,
    InvalidTitle,
    TitleConvention,
    MissingSku,
    InvalidSku,
    DuplicateSku,
    SkuInCatalog,
    InvalidBarcode,
    DuplicateBarcode,
    BarcodeInCatalog,
    MissingPrice,
    InvalidPrice,
    NegativePrice,
    OptionValueVariant,
    InvalidQuantity,
    NoLocation,
    StockReceipt,
    TooManyVariants,
    IgnoredColumns,
    SkippedRow,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidProductId => "invalid_product_id",
            Code::MissingTitle => "missing_title",
            Code::InvalidTitle => "invalid_title",
            Code::TitleConvention => "title_convention",
            Code::MissingSku => "missing_sku",
            Code::InvalidSku => "invalid_sku",
            Code::DuplicateSku => "duplicate_sku",
            Code::SkuInCatalog => "sku_in_catalog",
            Code::InvalidBarcode => "invalid_barcode",
            Code::DuplicateBarcode => "duplicate_barcode",
            Code::BarcodeInCatalog => "barcode_in_catalog",
            Code::MissingPrice => "missing_price",
            Code::InvalidPrice => "invalid_price",
            Code::NegativePrice => "negative_price",
            Code::OptionValueVariant => "option_value_variant",
            Code::InvalidQuantity => "invalid_quantity",
            Code::NoLocation => "no_location",
            Code::StockReceipt => "stock_receipt",
            Code::TooManyVariants => "too_many_variants",
            Code::IgnoredColumns => "ignored_columns",
            Code::SkippedRow => "skipped_row",
        }
    }
}

/// One finding, on one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub line: u32,
    pub severity: Severity,
    pub code: Code,
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub data_rows: u32,
    pub products: u32,
    pub variants: u32,
    pub errors: u32,
    pub warnings: u32,
    pub infos: u32,
    /// Products with at least one error (not applied, or skipped).
    pub products_with_errors: u32,
    /// Units the apply would receive at the location asked for.
    pub receipt_units: i64,
    /// More findings than [`MAX_PROBLEMS`]: the list is cut, counts are not.
    pub truncated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub summary: Summary,
    /// By line, then severity, then code.
    pub rows: Vec<Finding>,
}

/// What the catalog already holds of the file's SKUs and barcodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Existing {
    /// SKU -> the product it belongs to.
    pub skus: BTreeMap<String, String>,
    /// barcode -> the SKU it names.
    pub barcodes: BTreeMap<String, String>,
}

/// What the report is checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub naming: NamingRule,
    /// Where stock quantities would be received.
    pub location: Option<LocationId>,
}

fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A decimal string: optional `-`, digits, optional `.` and 1 to 4 digits.
pub fn parse_price(s: &str) -> Option<Decimal> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if s.len() > 24 || !digits(int) || frac.is_some_and(|f| !digits(f) || f.len() > 4) {
        return None;
    }
    s.parse::<Decimal>().ok()
}

/// Lower case, spaces trimmed and collapsed: values equal under it are one.
pub fn normalize(s: &str) -> String {
    let mut out = String::new();
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    out
}

struct Acc {
    rows: Vec<Finding>,
    summary: Summary,
}

impl Acc {
    fn add(&mut self, line: u32, severity: Severity, code: Code, field: &str, message: String) {
        match severity {
            Severity::Error => self.summary.errors += 1,
            Severity::Warning => self.summary.warnings += 1,
            Severity::Info => self.summary.infos += 1,
        }
        if self.rows.len() < MAX_PROBLEMS {
            self.rows.push(Finding {
                line,
                severity,
                code,
                field: field.to_string(),
                message,
            });
        } else {
            self.summary.truncated = true;
        }
    }
}

/// The cleaning report of a parsed file.
pub fn check(p: &Parsed, settings: &Settings, existing: &Existing) -> Report {
    let mut acc = Acc {
        rows: Vec::new(),
        summary: Summary {
            data_rows: p.data_rows,
            products: u32::try_from(p.products.len()).unwrap_or(u32::MAX),
            ..Summary::default()
        },
    };
    let (c_id, c_title, c_sku, c_bar, c_price, c_cmp, c_qty) = match p.format {
        Format::Shopify => (
            "Handle",
            "Title",
            "Variant SKU",
            "Variant Barcode",
            "Variant Price",
            "Variant Compare At Price",
            "Variant Inventory Qty",
        ),
        Format::Omnistock => (
            "product_id",
            "title",
            "sku",
            "barcode",
            "price",
            "compare_at_price",
            "qty",
        ),
    };
    if !p.ignored_columns.is_empty() {
        let mut list: String = p
            .ignored_columns
            .iter()
            .take(40)
            .fold(String::new(), |a, c| {
                if a.is_empty() {
                    c.clone()
                } else {
                    a + ", " + c
                }
            });
        if p.ignored_columns.len() > 40 {
            list.push_str(", ...");
        }
        acc.add(
            1,
            Severity::Info,
            Code::IgnoredColumns,
            "header",
            format!("columns not imported: {list}"),
        );
    }
    for &l in p.skipped_lines.iter() {
        acc.add(
            l,
            Severity::Info,
            Code::SkippedRow,
            c_id,
            "row holds no variant (no SKU, barcode, price or option): skipped".to_string(),
        );
    }
    let mut sku_seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut bar_seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut bad_products = 0u32;
    for prod in &p.products {
        let errors_before = acc.summary.errors;
        if !is_id(&prod.id) {
            acc.add(
                prod.line,
                Severity::Error,
                Code::InvalidProductId,
                c_id,
                format!(
                    "{:?} is not an id: 1 to 64 characters of A-Z a-z 0-9 . _ -",
                    prod.id
                ),
            );
        }
        let title_chars = prod.title.chars().count();
        if prod.title.trim().is_empty() {
            acc.add(
                prod.line,
                Severity::Error,
                Code::MissingTitle,
                c_title,
                "the product has no title".to_string(),
            );
        } else if title_chars > MAX_TITLE_CHARS || prod.title.chars().any(char::is_control) {
            acc.add(
                prod.line,
                Severity::Error,
                Code::InvalidTitle,
                c_title,
                format!("a title is 1 to {MAX_TITLE_CHARS} characters without control characters"),
            );
        } else if let Some(why) = settings.naming.check(&prod.title) {
            acc.add(
                prod.line,
                Severity::Warning,
                Code::TitleConvention,
                c_title,
                why,
            );
        }
        // Option values that differ only by case or spacing, per option.
        let mut opt_seen: [BTreeMap<String, (String, u32)>; 3] = Default::default();
        for (n, row) in prod.rows.iter().enumerate() {
            acc.summary.variants += 1;
            let l = row.line;
            if n == MAX_VARIANTS {
                acc.add(
                    l,
                    Severity::Error,
                    Code::TooManyVariants,
                    c_sku,
                    format!("a product has at most {MAX_VARIANTS} variants"),
                );
            }
            if row.sku.is_empty() {
                acc.add(
                    l,
                    Severity::Error,
                    Code::MissingSku,
                    c_sku,
                    "the variant has no SKU".to_string(),
                );
            } else if Sku::parse(&row.sku).is_err() {
                acc.add(
                    l,
                    Severity::Error,
                    Code::InvalidSku,
                    c_sku,
                    format!(
                        "{:?} is not a SKU: 1 to 64 characters of A-Z a-z 0-9 . _ -",
                        row.sku
                    ),
                );
            } else if let Some(first) = sku_seen.get(&row.sku) {
                acc.add(
                    l,
                    Severity::Error,
                    Code::DuplicateSku,
                    c_sku,
                    format!("SKU {} is also on line {first}", row.sku),
                );
            } else {
                sku_seen.insert(row.sku.clone(), l);
                if let Some(owner) = existing.skus.get(&row.sku) {
                    if owner != &prod.id {
                        acc.add(
                            l,
                            Severity::Error,
                            Code::SkuInCatalog,
                            c_sku,
                            format!("SKU {} already belongs to product {owner}", row.sku),
                        );
                    }
                }
            }
            if !row.barcode.is_empty() {
                if !gtin_valid(&row.barcode) {
                    acc.add(
                        l,
                        Severity::Error,
                        Code::InvalidBarcode,
                        c_bar,
                        format!(
                            "{:?} is not a valid GTIN-8/12/13/14 (digits and check digit)",
                            row.barcode
                        ),
                    );
                } else if let Some(first) = bar_seen.get(&row.barcode) {
                    acc.add(
                        l,
                        Severity::Error,
                        Code::DuplicateBarcode,
                        c_bar,
                        format!("barcode {} is also on line {first}", row.barcode),
                    );
                } else {
                    bar_seen.insert(row.barcode.clone(), l);
                    if let Some(owner) = existing.barcodes.get(&row.barcode) {
                        if owner != &row.sku {
                            acc.add(
                                l,
                                Severity::Error,
                                Code::BarcodeInCatalog,
                                c_bar,
                                format!("barcode {} already names SKU {owner}", row.barcode),
                            );
                        }
                    }
                }
            }
            for (col, raw, required) in [
                (c_price, &row.price, true),
                (c_cmp, &row.compare_at_price, false),
            ] {
                if raw.is_empty() {
                    if required {
                        acc.add(
                            l,
                            Severity::Error,
                            Code::MissingPrice,
                            col,
                            "the variant has no price".to_string(),
                        );
                    }
                    continue;
                }
                match parse_price(raw) {
                    None => acc.add(
                        l,
                        Severity::Error,
                        Code::InvalidPrice,
                        col,
                        format!("{raw:?} is not a decimal price like 19.90"),
                    ),
                    Some(d) if d.is_sign_negative() && !d.is_zero() => acc.add(
                        l,
                        Severity::Error,
                        Code::NegativePrice,
                        col,
                        format!("price {raw} is negative"),
                    ),
                    Some(_) => {}
                }
            }
            for (i, seen) in opt_seen.iter_mut().enumerate() {
                let Some(v) = row.option_values.get(i) else {
                    continue;
                };
                if v.trim().is_empty() {
                    continue;
                }
                let key = normalize(v);
                match seen.get(&key) {
                    Some((first, at)) if first != v => {
                        let col = match p.format {
                            Format::Shopify => ["Option1 Value", "Option2 Value", "Option3 Value"],
                            Format::Omnistock => {
                                ["option1_value", "option2_value", "option3_value"]
                            }
                        };
                        acc.add(
                            l,
                            Severity::Warning,
                            Code::OptionValueVariant,
                            col.get(i).copied().unwrap_or("option"),
                            format!(
                                "{v:?} differs from {first:?} (line {at}) only by case or spacing"
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(key, (v.clone(), l));
                    }
                }
            }
            if !row.qty.is_empty() {
                match row.qty.parse::<i64>() {
                    Ok(q) if (0..=MAX_QTY).contains(&q) => {
                        if q > 0 {
                            match &settings.location {
                                Some(loc) => {
                                    acc.summary.receipt_units += q;
                                    acc.add(
                                        l,
                                        Severity::Info,
                                        Code::StockReceipt,
                                        c_qty,
                                        format!("{q} units would be received at {loc}"),
                                    )
                                }
                                None => acc.add(
                                    l,
                                    Severity::Error,
                                    Code::NoLocation,
                                    c_qty,
                                    format!(
                                        "{q} units to import but no location asked for (?location=)"
                                    ),
                                ),
                            }
                        }
                    }
                    _ => acc.add(
                        l,
                        Severity::Error,
                        Code::InvalidQuantity,
                        c_qty,
                        format!("{:?} is not a whole number of units 0..={MAX_QTY}", row.qty),
                    ),
                }
            }
        }
        if acc.summary.errors > errors_before {
            bad_products += 1;
        }
    }
    acc.summary.products_with_errors = bad_products;
    let mut rows = acc.rows;
    rows.sort_by_key(|a| (a.line, a.severity, a.code));
    Report {
        summary: acc.summary,
        rows,
    }
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The report's findings as CSV, to fix in a spreadsheet.
pub fn problems_csv(r: &Report) -> String {
    let mut out = String::from("line,severity,code,field,message\r\n");
    for f in &r.rows {
        out.push_str(&format!(
            "{},{},{},",
            f.line,
            f.severity.as_str(),
            f.code.as_str()
        ));
        csv_field(&mut out, &f.field);
        out.push(',');
        csv_field(&mut out, &f.message);
        out.push_str("\r\n");
    }
    out
}

/// One variant as an apply writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantOut {
    pub sku: Sku,
    pub barcode: Option<String>,
    pub options: BTreeMap<String, String>,
    pub price: Decimal,
    pub compare_at_price: Option<Decimal>,
    pub taxable: bool,
    /// Units to receive at the import's location.
    pub qty: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductOut {
    pub id: String,
    pub title: String,
    pub variants: Vec<VariantOut>,
}

/// What an apply writes, and which products it leaves out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub products: Vec<ProductOut>,
    /// Products left out for their errors: (id, first line).
    pub skipped: Vec<(String, u32)>,
}

/// Why an apply is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The report has errors and skipping was not asked for.
    Errors(u32),
}

/// The products an apply writes: all rows of a product or none. A product
/// with an error on any of its lines is refused, or skipped when asked.
pub fn plan(p: &Parsed, report: &Report, skip_errors: bool) -> Result<Plan, PlanError> {
    if report.summary.errors > 0 && !skip_errors {
        return Err(PlanError::Errors(report.summary.errors));
    }
    let error_lines: alloc::collections::BTreeSet<u32> = report
        .rows
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.line)
        .collect();
    let mut out = Plan::default();
    for prod in &p.products {
        let bad = error_lines.contains(&prod.line)
            || prod.rows.iter().any(|r| error_lines.contains(&r.line))
            // A cut report may have lost a product's error: never guess.
            || report.summary.truncated;
        let variants: Option<Vec<VariantOut>> = if bad {
            None
        } else {
            prod.rows
                .iter()
                .map(|r| {
                    let mut options = BTreeMap::new();
                    for (name, v) in prod.option_names.iter().zip(&r.option_values) {
                        if !v.trim().is_empty() && !name.is_empty() {
                            options.insert(name.clone(), v.trim().to_string());
                        }
                    }
                    Some(VariantOut {
                        sku: Sku::parse(&r.sku).ok()?,
                        barcode: (!r.barcode.is_empty()).then(|| r.barcode.clone()),
                        options,
                        price: parse_price(&r.price)?,
                        compare_at_price: if r.compare_at_price.is_empty() {
                            None
                        } else {
                            Some(parse_price(&r.compare_at_price)?)
                        },
                        taxable: !matches!(r.taxable.to_ascii_lowercase().as_str(), "false" | "no"),
                        qty: if r.qty.is_empty() {
                            0
                        } else {
                            r.qty.parse().ok()?
                        },
                    })
                })
                .collect()
        };
        match variants {
            Some(v) => out.products.push(ProductOut {
                id: prod.id.clone(),
                title: prod.title.clone(),
                variants: v,
            }),
            None => out.skipped.push((prod.id.clone(), prod.line)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
