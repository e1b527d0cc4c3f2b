//! Receipt snapshots (core/tests/fixtures/receipts/*; `UPDATE_EXPECT=1` to
//! rewrite after a deliberate change) and the 42-column property.
use expect_test::{expect_file, ExpectFile};
use omnistock_core::customer::{
    Customer as CustomerState, LoyaltyConfig, PurchaseFact, PurchaseLine, Source,
};
use omnistock_core::money::{Currency, Decimal, Money};
use omnistock_core::receipt::{
    html, text, Customer, Direction, LineInput, Loyalty, Payment, Receipt, ReceiptError,
    ReceiptInput, ReceiptKind,
};
use omnistock_core::report::accounting::day_book;
use omnistock_core::report::{Facts, Fed, Paid, SaleBody, SoldLine};
use omnistock_core::tax::{LineTax, TaxRate, TaxTable};
use omnistock_core::{Channel, LocationId, SaleId, Sku, Timestamp};

fn eur(a: &str) -> Money {
    Money::parse(a, "EUR").unwrap()
}

fn table(inclusive: bool) -> TaxTable {
    let rate = |l: &str, c: &str, r: &str| TaxRate {
        location: l.into(),
        code: c.into(),
        rate: r.parse::<Decimal>().unwrap(),
    };
    TaxTable::new(
        inclusive,
        "standard".into(),
        vec![
            rate("*", "standard", if inclusive { "0.20" } else { "0.08" }),
            rate("*", "reduced", if inclusive { "0.055" } else { "0.02" }),
        ],
    )
    .unwrap()
}

fn line(sku: &str, title: &str, qty: i64, price: &str, catalog: &str) -> LineInput {
    LineInput {
        sku: sku.into(),
        title: title.into(),
        options: vec![
            ("Color".into(), "Black".into()),
            ("Size".into(), "M".into()),
        ],
        qty,
        unit_price: eur(price),
        catalog_price: Some(eur(catalog)),
        tax_code: None,
        tax_location: None,
        direction: Direction::Sold,
        tax: None,
    }
}

fn input(kind: ReceiptKind, number: &str) -> ReceiptInput {
    ReceiptInput {
        kind,
        number: number.into(),
        reference: None,
        shop: "Omnistock Demo Shop".into(),
        location: LocationId::parse("store-1").unwrap(),
        location_name: "Downtown".into(),
        // 2026-11-29T09:12:00Z
        issued_at: Timestamp(1_795_943_520_000),
        currency: Currency::parse("EUR").unwrap(),
        lines: vec![],
        payments: vec![],
        refunds: vec![],
        customer: None,
        return_window_days: 30,
        tax_inclusive: None,
    }
}

fn pay(method: &str, a: &str) -> Payment {
    Payment {
        method: method.into(),
        amount: eur(a),
    }
}

fn check(r: &Receipt, name: &str, text_file: ExpectFile, html_file: ExpectFile) {
    let t = text::render(r, false);
    for l in t.lines() {
        assert!(l.chars().count() <= text::COLUMNS, "{name}: {l:?}");
    }
    text_file.assert_eq(&t);
    html_file.assert_eq(&html::render(r, false));
}

fn cash_sale() -> Receipt {
    let mut i = input(ReceiptKind::Sale, "s-1001");
    i.lines = vec![
        // The till set 19.90 where the catalog says 24.90: a discount.
        line("TEE-BLK-M", "Organic cotton tee", 2, "19.90", "24.90"),
        LineInput {
            tax_code: Some("reduced".into()),
            options: vec![],
            ..line(
                "BOOK-1",
                "A field guide to very long titles that wrap over the line",
                1,
                "12.00",
                "12.00",
            )
        },
    ];
    i.payments = vec![pay("cash", "60.00")];
    Receipt::build(i, &table(false)).unwrap()
}

#[test]
fn a_cash_sale_gives_change() {
    let r = cash_sale();
    // 39.80 at 8 % (3.18) + 12.00 at 2 % (0.24) = 55.22; 60.00 paid.
    assert_eq!(r.totals.total, eur("55.22"));
    assert_eq!(r.totals.change, eur("4.78"));
    assert_eq!(r.totals.discount, eur("10.00"));
    check(
        &r,
        "cash",
        expect_file!["fixtures/receipts/cash_sale.txt"],
        expect_file!["fixtures/receipts/cash_sale.html"],
    );
    expect_file!["fixtures/receipts/cash_sale.json"]
        .assert_eq(&serde_json::to_string_pretty(&r).unwrap());
    // A reprint is the same receipt marked as a copy.
    let copy = text::render(&r, true);
    assert!(copy.lines().next().unwrap().trim() == "*** COPY - REPRINT ***");
    assert!(html::render(&r, true).contains("COPY - REPRINT"));
    assert!(!html::render(&r, false).contains("COPY - REPRINT"));
}

#[test]
fn a_card_sale_with_a_known_customer_shows_points() {
    let mut i = input(ReceiptKind::Sale, "s-1002");
    i.lines = vec![line("TEE-BLK-M", "Organic cotton tee", 1, "24.90", "24.90")];
    i.payments = vec![pay("card", "26.89")];
    i.customer = Some(Customer {
        id: "cust-42".into(),
        name: Some("Ada Lovelace".into()),
        loyalty: Some(Loyalty {
            earned: 26,
            redeemed: 100,
            balance: 312,
        }),
    });
    let r = Receipt::build(i, &table(false)).unwrap();
    assert_eq!(r.totals.total, eur("26.89"));
    assert_eq!(r.totals.change, eur("0"));
    check(
        &r,
        "card",
        expect_file!["fixtures/receipts/card_customer.txt"],
        expect_file!["fixtures/receipts/card_customer.html"],
    );
}

#[test]
fn tax_inclusive_and_exclusive_locations() {
    let mut i = input(ReceiptKind::OrderPaid, "ord-7");
    i.lines = vec![
        line("TEE-BLK-M", "Organic cotton tee", 3, "24.90", "24.90"),
        LineInput {
            tax_code: Some("reduced".into()),
            ..line("TEA-1", "Green tea", 2, "4.99", "4.99")
        },
    ];
    i.payments = vec![pay("card", "84.68")];
    let inc = Receipt::build(i.clone(), &table(true)).unwrap();
    // Inclusive: the prices are the total; 74.70 holds 12.45 at 20 %, 9.98 holds 0.52.
    assert_eq!(inc.totals.total, eur("84.68"));
    assert_eq!(inc.totals.tax, eur("12.97"));
    assert_eq!(inc.totals.net, eur("71.71"));
    check(
        &inc,
        "inclusive",
        expect_file!["fixtures/receipts/tax_inclusive.txt"],
        expect_file!["fixtures/receipts/tax_inclusive.html"],
    );
    i.payments = vec![pay("card", "90.86")];
    i.kind = ReceiptKind::OrderFulfilled;
    let exc = Receipt::build(i, &table(false)).unwrap();
    // Exclusive: 74.70 + 5.98 (8 %) + 9.98 + 0.20 (2 %) = 90.86.
    assert_eq!(exc.totals.total, eur("90.86"));
    assert_eq!(exc.totals.tax, eur("6.18"));
    check(
        &exc,
        "exclusive",
        expect_file!["fixtures/receipts/tax_exclusive.txt"],
        expect_file!["fixtures/receipts/tax_exclusive.html"],
    );
    // The totals are the tax module's: net + tax = total, per rate and overall.
    for r in [&inc, &exc] {
        assert_eq!(
            r.totals.net.checked_add(r.totals.tax).unwrap(),
            r.totals.total
        );
        let sum = r
            .taxes
            .iter()
            .try_fold(eur("0"), |a, t| a.checked_add(t.gross))
            .unwrap();
        assert_eq!(sum, r.totals.total);
    }
}

#[test]
fn an_exchange_with_a_price_difference() {
    let mut i = input(ReceiptKind::Exchange, "ret-9");
    i.reference = Some("s-1001".into());
    i.lines = vec![
        LineInput {
            direction: Direction::Returned,
            ..line("TEE-BLK-M", "Organic cotton tee", 1, "19.90", "24.90")
        },
        LineInput {
            options: vec![
                ("Color".into(), "Black".into()),
                ("Size".into(), "L".into()),
            ],
            ..line("HOOD-BLK-L", "Hooded sweatshirt", 1, "39.00", "39.00")
        },
    ];
    i.payments = vec![pay("card", "20.63")];
    let r = Receipt::build(i, &table(false)).unwrap();
    // 42.12 - 21.49 = 20.63 to pay; a returned line's discount is not a saving.
    assert_eq!(r.totals.total, eur("20.63"));
    assert_eq!(r.totals.discount, eur("0"));
    check(
        &r,
        "exchange",
        expect_file!["fixtures/receipts/exchange.txt"],
        expect_file!["fixtures/receipts/exchange.html"],
    );
}

#[test]
fn a_refund() {
    let mut i = input(ReceiptKind::Refund, "ret-10");
    i.reference = Some("s-1001".into());
    i.lines = vec![LineInput {
        direction: Direction::Returned,
        ..line("TEE-BLK-M", "Organic cotton tee", 2, "19.90", "24.90")
    }];
    i.refunds = vec![pay("cash", "42.98")];
    let r = Receipt::build(i, &table(false)).unwrap();
    assert_eq!(r.totals.total, eur("-42.98"));
    assert_eq!(r.totals.refunded, eur("42.98"));
    assert_eq!(r.totals.change, eur("0"));
    assert_eq!(r.return_by, None);
    check(
        &r,
        "refund",
        expect_file!["fixtures/receipts/refund.txt"],
        expect_file!["fixtures/receipts/refund.html"],
    );
}

/// A POS sale as the Worker records it: each line's tax computed once with
/// the table at the sale's location (`TaxTable::line`), kept on the line.
fn recorded_sale(number: &str, t: &TaxTable, lines: Vec<LineInput>) -> ReceiptInput {
    let loc = LocationId::parse("store-1").unwrap();
    let mut i = input(ReceiptKind::Sale, number);
    i.tax_inclusive = Some(t.inclusive);
    i.lines = lines
        .into_iter()
        .map(|l| LineInput {
            tax: Some(
                t.line(&loc, l.tax_code.as_deref(), l.unit_price, l.qty)
                    .unwrap(),
            ),
            ..l
        })
        .collect();
    i
}

/// The sale as the event feed carries it to the books (the same recorded tax).
fn fed(i: &ReceiptInput, payments: &[(&str, &str)]) -> Facts {
    let loc = LocationId::parse("store-1").unwrap();
    let body = SaleBody {
        sale_id: i.number.clone(),
        terminal_id: "t1".into(),
        location: loc.clone(),
        occurred_at: i.issued_at,
        customer_id: None,
        currency: i.currency,
        lines: i
            .lines
            .iter()
            .map(|l| SoldLine {
                sku: Sku::parse(&l.sku).unwrap(),
                qty: l.qty,
                unit_price: l.unit_price.amount,
                tax: l.tax.unwrap().tax.amount,
                location: loc.clone(),
            })
            .collect(),
        payments: payments
            .iter()
            .map(|(m, a)| Paid {
                method: (*m).into(),
                amount: a.parse().unwrap(),
            })
            .collect(),
        tax_inclusive: i.tax_inclusive.unwrap(),
    };
    let f = Fed {
        source: "terminal:t1".into(),
        seq: 1,
        at: i.issued_at,
        body,
    };
    // Delivered twice: counted once.
    Facts::new(&[], &[f.clone(), f], &[], &[])
}

/// The receipt, the sale's payment and the day's export agree to the cent.
fn agrees_with_the_books(r: &Receipt, facts: &Facts) {
    let day = day_book(
        facts,
        Timestamp(r.issued_at.as_ms() - 1),
        Timestamp(r.issued_at.as_ms() + 1),
        "2026-11-29",
    );
    assert_eq!(day.receipts.len(), 1);
    let e = &day.receipts[0];
    assert_eq!(e.total, r.totals.total.amount, "export total");
    assert_eq!(e.total_tax, r.totals.tax.amount, "export tax");
    assert_eq!(e.tax_inclusive, r.tax_inclusive);
    assert_eq!(day.totals[0].sales_total, r.totals.total.amount);
    for (el, rl) in e.lines.iter().zip(&r.lines) {
        assert_eq!(el.tax, rl.tax.tax.amount, "line tax");
        assert_eq!(el.amount, rl.amount.amount, "line amount");
    }
    assert_eq!(r.totals.paid, r.totals.total, "paid what the receipt says");
}

#[test]
fn a_pos_sale_receipt_reads_the_tax_recorded_at_sale_time() {
    let lines = || {
        vec![
            line("TEE-BLK-M", "Organic cotton tee", 3, "19.99", "24.90"),
            LineInput {
                tax_code: Some("reduced".into()),
                options: vec![],
                ..line("TEA-1", "Green tea", 2, "4.99", "4.99")
            },
        ]
    };
    // Exclusive (8 %, 2 %): 59.97 + 4.80 and 9.98 + 0.20 = 74.95.
    let exc = table(false);
    let mut i = recorded_sale("s-2001", &exc, lines());
    i.payments = vec![pay("card", "74.95")];
    let facts = fed(&i, &[("card", "74.95")]);
    // Built against a table with no tax at all: the recorded tax is read,
    // never recomputed (a TAX_TABLE changed after the sale changes nothing).
    let r = Receipt::build(i, &TaxTable::zero()).unwrap();
    assert_eq!(r.totals.tax, eur("5.00"));
    assert_eq!(r.totals.total, eur("74.95"));
    assert!(!r.tax_inclusive);
    agrees_with_the_books(&r, &facts);
    check(
        &r,
        "recorded exclusive",
        expect_file!["fixtures/receipts/sale_recorded_exclusive.txt"],
        expect_file!["fixtures/receipts/sale_recorded_exclusive.html"],
    );
    // Inclusive (20 %, 5.5 %): 59.97 holds 10.00, 9.98 holds 0.52; total 69.95.
    let inc = table(true);
    let mut i = recorded_sale("s-2002", &inc, lines());
    i.payments = vec![pay("cash", "69.95")];
    let facts = fed(&i, &[("cash", "69.95")]);
    let r = Receipt::build(i, &TaxTable::zero()).unwrap();
    assert_eq!(r.totals.total, eur("69.95"));
    assert_eq!(r.totals.tax, eur("10.52"));
    assert_eq!(r.totals.net, eur("59.43"));
    assert!(r.tax_inclusive);
    agrees_with_the_books(&r, &facts);
    check(
        &r,
        "recorded inclusive",
        expect_file!["fixtures/receipts/sale_recorded_inclusive.txt"],
        expect_file!["fixtures/receipts/sale_recorded_inclusive.html"],
    );
}

#[test]
fn a_sale_recorded_without_tax_is_booked_as_charged() {
    // The rule for sales stored before sales recorded their tax: as
    // charged, tax included, rate 0 (what the export booked them as).
    let mut i = input(ReceiptKind::Sale, "s-old");
    i.tax_inclusive = Some(true);
    i.lines = vec![LineInput {
        tax: Some(LineTax::as_charged(eur("24.90"))),
        ..line("TEE-BLK-M", "Organic cotton tee", 1, "24.90", "24.90")
    }];
    i.payments = vec![pay("cash", "24.90")];
    let facts = fed(&i, &[("cash", "24.90")]);
    let r = Receipt::build(i, &table(false)).unwrap();
    assert_eq!(r.totals.total, eur("24.90"));
    assert_eq!(r.totals.tax, eur("0"));
    agrees_with_the_books(&r, &facts);
}

#[test]
fn a_recorded_tax_that_does_not_fit_its_line_is_refused() {
    let t = table(false);
    let mut i = recorded_sale("s-3", &t, vec![line("A", "a", 2, "10.00", "10.00")]);
    // The line says 2 x 10.00 but its recorded tax is of another amount.
    i.lines[0].unit_price = eur("9.00");
    let e = Receipt::build(i.clone(), &t).unwrap_err();
    assert!(matches!(e, ReceiptError::RecordedTax { .. }), "{e:?}");
    // Read as inclusive, exclusive tax does not fit either.
    i.lines[0].unit_price = eur("10.00");
    i.tax_inclusive = Some(true);
    assert!(Receipt::build(i.clone(), &t).is_err());
    // A line without recorded tax on a receipt of the other convention
    // than the table cannot be priced honestly.
    i.lines[0].tax = None;
    assert!(Receipt::build(i, &t).is_err());
}

#[test]
fn a_card_sale_receipt_states_the_points_its_customer_fixed() {
    // The customer has 60 points, redeems 40 for this sale at the till,
    // then the sale (26.89 paid) is recorded and earns 26.
    let cfg = LoyaltyConfig::parse("1", "1").unwrap();
    let mut c = CustomerState::new(Timestamp(0));
    let sale_fact = |id: &str, total: &str| PurchaseFact {
        source: Source::Sale(SaleId::parse(id).unwrap()),
        channel: Channel::Pos,
        location: Some(LocationId::parse("store-1").unwrap()),
        at: Timestamp(1),
        total: eur(total),
        lines: vec![PurchaseLine {
            sku: Sku::parse("TEE-BLK-M").unwrap(),
            qty: 1,
            amount: eur(total),
        }],
    };
    c.record_purchase(sale_fact("s-0", "60.00"), &cfg).unwrap();
    c.redeem(Timestamp(2), "k-1", 40, Some("s-1003".into()))
        .unwrap();
    let t = table(false);
    let mut i = recorded_sale(
        "s-1003",
        &t,
        vec![line("TEE-BLK-M", "Organic cotton tee", 1, "24.90", "24.90")],
    );
    i.payments = vec![pay("card", "26.89")];
    let facts = fed(&i, &[("card", "26.89")]);
    c.record_purchase(sale_fact("s-1003", "26.89"), &cfg)
        .unwrap();
    i.customer = Some(Customer {
        id: "cust-43".into(),
        name: None,
        loyalty: c.receipt_loyalty(&Source::Sale(SaleId::parse("s-1003").unwrap())),
    });
    let r = Receipt::build(i, &t).unwrap();
    let l = r.customer.as_ref().unwrap().loyalty.unwrap();
    assert_eq!((l.earned, l.redeemed, l.balance), (26, 40, 46));
    agrees_with_the_books(&r, &facts);
    check(
        &r,
        "card with points",
        expect_file!["fixtures/receipts/card_customer_recorded.txt"],
        expect_file!["fixtures/receipts/card_customer_recorded.html"],
    );
}

#[test]
fn what_cannot_be_printed_honestly_is_refused() {
    let mut i = input(ReceiptKind::Sale, "s-1");
    assert!(
        Receipt::build(i.clone(), &table(false)).is_err(),
        "no lines"
    );
    i.lines = vec![line("A", "a", 0, "1.00", "1.00")];
    assert!(Receipt::build(i.clone(), &table(false)).is_err(), "qty 0");
    i.lines = vec![LineInput {
        unit_price: Money::parse("1.00", "USD").unwrap(),
        ..line("A", "a", 1, "1.00", "1.00")
    }];
    assert!(
        Receipt::build(i.clone(), &table(false)).is_err(),
        "currency"
    );
    i.lines = vec![line("A", "a", 1, "1.00", "1.00")];
    i.number = "not a barcode é".into();
    assert!(Receipt::build(i.clone(), &table(false)).is_err(), "number");
    i.number = "s-1".into();
    i.return_window_days = 366;
    assert!(Receipt::build(i, &table(false)).is_err(), "window");
}

#[test]
fn html_escapes_what_it_prints() {
    let mut i = input(ReceiptKind::Sale, "s-1");
    i.shop = "<script>alert(1)</script>".into();
    i.lines = vec![line("A", "Tom & \"Jerry\" <b>", 1, "1.00", "1.00")];
    let h = html::render(&Receipt::build(i, &table(false)).unwrap(), false);
    assert!(!h.contains("<script>"));
    assert!(h.contains("Tom &amp; &quot;Jerry&quot; &lt;b&gt;"));
    assert!(!h.contains("<img"), "no images: readable with images off");
}

#[cfg(not(target_arch = "wasm32"))]
mod width {
    use super::*;
    use proptest::prelude::*;

    fn any_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..120).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn no_text_line_exceeds_42_columns(
            shop in any_text(),
            place in any_text(),
            titles in proptest::collection::vec((any_text(), any_text(), any_text()), 1..6),
            qtys in proptest::collection::vec(1i64..=1_000_000, 6),
            cents in proptest::collection::vec(0i64..=99_999_999_999, 6),
            method in "[a-z_-]{1,32}",
            name in proptest::option::of(any_text()),
            copy in any::<bool>(),
            number in "[A-Za-z0-9._-]{1,64}",
        ) {
            let mut i = input(ReceiptKind::Sale, &number);
            i.shop = shop;
            i.location_name = place;
            i.lines = titles.iter().enumerate().map(|(n, (t, k, v))| LineInput {
                sku: "SKU-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789-abcdefghijklmnopqrstu".into(),
                title: t.clone(),
                options: vec![(k.clone(), v.clone())],
                qty: qtys[n],
                unit_price: Money::new(Decimal::new(cents[n], 2), i.currency).unwrap(),
                catalog_price: Some(eur("999999999.99")),
                tax_code: None,
                tax_location: None,
                direction: if n % 2 == 0 { Direction::Sold } else { Direction::Returned },
                tax: None,
            }).collect();
            i.payments = vec![Payment { method: method.clone(), amount: eur("99999999999.99") }];
            i.refunds = vec![Payment { method, amount: eur("1.00") }];
            i.customer = Some(Customer {
                id: number.clone(),
                name,
                loyalty: Some(Loyalty { earned: i64::MAX, redeemed: i64::MIN, balance: 0 }),
            });
            let r = Receipt::build(i, &table(false)).unwrap();
            for l in text::render(&r, copy).lines() {
                prop_assert!(l.chars().count() <= text::COLUMNS, "{:?}", l);
            }
        }
    }
}
