use alloc::string::ToString;
use alloc::vec::Vec;

use super::*;

const SHOP: &str = "Handle,Title,Body (HTML),Option1 Name,Option1 Value,Variant SKU,Variant Barcode,Variant Price,Variant Inventory Qty,Image Src\r\n\
tee,Organic tee,<p>soft</p>,Color,Black,TEE-BLK,4006381333931,19.90,5,a.png\r\n\
tee,,,,black ,TEE-BLK2,12345678,19.90,0,\r\n\
tee,,,,,,,,,b.png\r\n\
\"mug\",\"mug, \"\"big\"\"\",,Title,Default Title,TEE-BLK,4006381333931,-3,x,\r\n";

fn report(csv: &str, loc: Option<&str>) -> (Parsed, Report) {
    let p = parse(csv.as_bytes()).expect("parses");
    let s = Settings {
        naming: NamingRule::default(),
        location: loc.map(|l| LocationId::parse(l).unwrap()),
    };
    let r = check(&p, &s, &Existing::default());
    (p, r)
}

fn codes(r: &Report) -> Vec<(u32, &'static str)> {
    r.rows.iter().map(|f| (f.line, f.code.as_str())).collect()
}

#[test]
fn gtin_check_digits() {
    assert!(gtin_valid("4006381333931")); // EAN-13
    assert!(gtin_valid("96385074")); // EAN-8
    assert!(gtin_valid("036000291452")); // UPC-A
    assert!(gtin_valid("10012345678902")); // GTIN-14
    assert!(!gtin_valid("4006381333932"));
    assert!(!gtin_valid("12345678"));
    assert!(!gtin_valid("40063813339a1"));
    assert!(!gtin_valid("123"));
}

#[test]
fn records_keep_lines_and_quotes() {
    let r = read_records(b"a,b\r\n\"x\ny\",2\n\n3,4", 10).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!((r[1].line, r[1].fields[0].as_str()), (2, "x\ny"));
    assert_eq!((r[2].line, r[2].fields[1].as_str()), (5, "4"));
}

#[test]
fn shopify_groups_by_handle_and_reports_each_kind() {
    let (p, r) = report(SHOP, None);
    assert_eq!(p.format, Format::Shopify);
    assert_eq!(p.products.len(), 2);
    assert_eq!(p.products[0].rows.len(), 2);
    assert_eq!(p.products[0].option_names[0], "Color");
    assert_eq!(p.skipped_lines, [4]);
    assert_eq!(
        codes(&r),
        [
            (1, "ignored_columns"),
            (2, "no_location"),
            (3, "invalid_barcode"),
            (3, "option_value_variant"),
            (4, "skipped_row"),
            (5, "duplicate_sku"),
            (5, "duplicate_barcode"),
            (5, "negative_price"),
            (5, "invalid_quantity"),
            (5, "title_convention"),
        ]
    );
    assert_eq!(r.summary.errors, 6);
    assert_eq!(r.summary.warnings, 2);
    assert_eq!(r.summary.products_with_errors, 2);
    assert!(matches!(plan(&p, &r, false), Err(PlanError::Errors(6))));
    let pl = plan(&p, &r, true).unwrap();
    assert!(pl.products.is_empty());
    assert_eq!(pl.skipped.len(), 2);
}

#[test]
fn clean_omnistock_file_plans_every_product() {
    let csv = "product_id,title,sku,barcode,option1_name,option1_value,price,qty\n\
p1,Shirt,S-1,96385074,Size,M,10.00,3\n\
p1,,S-2,,Size,L,10.5,\n\
p2,Cap,C-1,,,,0,0\n";
    let (p, r) = report(csv, Some("store-1"));
    assert_eq!(r.summary.errors, 0, "{:?}", r.rows);
    assert_eq!(r.summary.receipt_units, 3);
    assert_eq!(codes(&r), [(2, "stock_receipt")]);
    let pl = plan(&p, &r, false).unwrap();
    assert_eq!(pl.products.len(), 2);
    let v = &pl.products[0].variants;
    assert_eq!(v[1].options.get("Size").map(|s| s.as_str()), Some("L"));
    assert_eq!(v[0].qty, 3);
    assert_eq!(v[1].price.to_string(), "10.5");
}

#[test]
fn catalog_owners_are_errors() {
    let csv =
        "product_id,title,sku,barcode,price\np1,Shirt,S-1,96385074,1\np2,Hat,H-1,036000291452,1\n";
    let p = parse(csv.as_bytes()).unwrap();
    let mut e = Existing::default();
    e.skus.insert("S-1".to_string(), "p1".to_string()); // same product: an update
    e.skus.insert("H-1".to_string(), "other".to_string());
    e.barcodes.insert("96385074".to_string(), "X".to_string());
    let r = check(&p, &Settings::default(), &e);
    assert_eq!(
        codes(&r),
        [(2, "barcode_in_catalog"), (3, "sku_in_catalog")]
    );
}

#[test]
fn naming_rule_parses_and_checks() {
    let r = NamingRule::parse("max_len=5;forbid=#;capitalized=false").unwrap();
    assert!(r.check("abcde").is_none());
    assert!(r.check("abcdef").is_some());
    assert!(r.check("a#").is_some());
    assert!(NamingRule::parse("nope=1").is_err());
    assert!(NamingRule::parse("max_len=0").is_err());
    assert!(NamingRule::default().check("lower").is_some());
}

#[test]
fn bad_files_are_typed_errors() {
    assert_eq!(parse(b""), Err(ImportError::Empty));
    assert_eq!(parse(b"a,b\n1,2\n"), Err(ImportError::UnknownFormat));
    assert_eq!(
        parse(b"Handle,Title\n"),
        Err(ImportError::MissingColumn("Variant SKU"))
    );
    assert_eq!(
        parse(b"Handle,Title,Variant SKU\nh,\xff,x\n"),
        Err(ImportError::NotUtf8 { line: 2 })
    );
}

#[test]
fn problems_csv_quotes() {
    let (_, r) = report(SHOP, None);
    let csv = problems_csv(&r);
    assert!(csv.starts_with("line,severity,code,field,message\r\n"));
    let back = read_records(csv.as_bytes(), 100).unwrap();
    assert_eq!(back.len(), r.rows.len() + 1);
    assert_eq!(back[1].fields[4], r.rows[0].message);
}

#[test]
fn price_syntax() {
    assert!(parse_price("19.90").is_some());
    assert!(parse_price("-1").is_some());
    for bad in ["", "1e3", "1_0", "1.", ".5", "1.23456", "abc", "1,50"] {
        assert!(parse_price(bad).is_none(), "{bad}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = parse(&b) {
                let r = check(&p, &Settings::default(), &Existing::default());
                let _ = plan(&p, &r, true);
                let _ = problems_csv(&r);
            }
        }

        #[test]
        fn never_panics_on_csv_like(
            cells in proptest::collection::vec("[a-zA-Z0-9 ,\"\\r\\n.\\-]{0,12}", 0..60)
        ) {
            let mut s = String::from("Handle,Title,Option1 Value,Variant SKU,Variant Barcode,Variant Price,Variant Inventory Qty\n");
            for (i, c) in cells.iter().enumerate() {
                s.push_str(c);
                s.push(if i % 7 == 6 { '\n' } else { ',' });
            }
            if let Ok(p) = parse(s.as_bytes()) {
                let r = check(&p, &Settings::default(), &Existing::default());
                let _ = plan(&p, &r, true);
            }
        }
    }
}
