//! Orders, returns, bundles, fulfillment and money: snapshot tests.
use expect_test::expect;
use omnistock_core::bundle::{expand_lines, Bundle, BundleError, Component};
use omnistock_core::fulfillment::{allocate, distance_m, GeoPoint, Line, Rule, Site};
use omnistock_core::money::{Decimal, Money, MoneyError, RoundingStrategy};
use omnistock_core::order::{order_hold_id, transition, Order, OrderLine, OrderStatus};
use omnistock_core::returns::{Return, ReturnError, ReturnSource, ReturnStatus};
use omnistock_core::sku::Condition;
use omnistock_core::*;
use std::collections::BTreeMap;
use std::fmt::Write;

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}
fn loc(s: &str) -> LocationId {
    LocationId::parse(s).unwrap()
}
fn eur(a: &str) -> Money {
    Money::parse(a, "EUR").unwrap()
}

#[test]
fn every_order_transition() {
    let mut out = String::new();
    for from in OrderStatus::ALL {
        for to in OrderStatus::ALL {
            match transition(from, to) {
                Ok(effect) => writeln!(out, "{from} -> {to}: {effect:?}").unwrap(),
                Err(e) if from == OrderStatus::Packed || from == OrderStatus::Returned => {
                    if to == OrderStatus::New {
                        writeln!(out, "{e}").unwrap()
                    }
                }
                Err(_) => {}
            }
        }
    }
    expect![[r#"
        new -> paid: Commit
        new -> cancelled: Release
        paid -> ready_to_pick: None
        paid -> cancelled: Release
        ready_to_pick -> packed: None
        ready_to_pick -> cancelled: Release
        cannot go from packed to new; allowed: shipped ready_for_pickup cancelled
        packed -> shipped: Fulfill
        packed -> ready_for_pickup: None
        packed -> cancelled: Release
        shipped -> returned: None
        ready_for_pickup -> collected: Fulfill
        ready_for_pickup -> cancelled: Release
        collected -> returned: None
        cannot go from returned to new; allowed: none
    "#]]
    .assert_eq(&out);
}

#[test]
fn an_order_issues_the_stock_commands_of_each_step() {
    let id = OrderId::parse("O1").unwrap();
    let lines = vec![
        OrderLine {
            sku: sku("TEE"),
            qty: 2,
            unit_price: eur("19.90"),
            location: loc("store-1"),
            hold: order_hold_id(&id, 0).unwrap(),
        },
        OrderLine {
            sku: sku("CAP"),
            qty: 1,
            unit_price: eur("7.5"),
            location: loc("wh"),
            hold: order_hold_id(&id, 1).unwrap(),
        },
    ];
    let mut o = Order::new(id, Channel::Online, lines, false).unwrap();
    let mut out = format!(
        "total {}\nplace {:?}\n",
        o.total().unwrap(),
        o.place_commands()
    );
    for to in [
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::ReadyToPick,
        OrderStatus::Packed,
        OrderStatus::Shipped,
        OrderStatus::Cancelled,
        OrderStatus::Returned,
    ] {
        match o.transition(to) {
            Ok(cmds) => writeln!(out, "-> {to}: {cmds:?}").unwrap(),
            Err(e) => writeln!(out, "-> {to}: {e}").unwrap(),
        }
    }
    writeln!(
        out,
        "history {:?}, fulfilled TEE {}",
        o.history,
        o.fulfilled_qty(&sku("TEE"))
    )
    .unwrap();
    let bad = Order::new(OrderId::parse("O2").unwrap(), Channel::Pos, vec![], false);
    writeln!(out, "{bad:?}").unwrap();
    expect![[r#"
        total 47.30 EUR
        place [("TEE", Hold { hold: "ord.O1.0", location: "store-1", qty: 2, channel: Online, ttl_ms: None }), ("CAP", Hold { hold: "ord.O1.1", location: "wh", qty: 1, channel: Online, ttl_ms: None })]
        -> paid: [("TEE", Commit { hold: "ord.O1.0" }), ("CAP", Commit { hold: "ord.O1.1" })]
        -> shipped: cannot go from paid to shipped; allowed: ready_to_pick cancelled
        -> ready_to_pick: []
        -> packed: []
        -> shipped: [("TEE", Fulfill { hold: "ord.O1.0" }), ("CAP", Fulfill { hold: "ord.O1.1" })]
        -> cancelled: cannot go from shipped to cancelled; allowed: returned
        -> returned: []
        history [New, Paid, ReadyToPick, Packed, Shipped, Returned], fulfilled TEE 2
        Err(NoLines)
    "#]].assert_eq(&out);
}

#[test]
fn returns_and_exchanges() {
    let sold: BTreeMap<Sku, i64> = [(sku("TEE"), 3), (sku("CAP"), 1)].into_iter().collect();
    let src = ReturnSource::Sale(SaleId::parse("X1").unwrap());
    let id = ReturnId::parse("R1").unwrap();
    let s = |k: &Sku| sold.get(k).copied().unwrap_or(0);
    let mut out = String::new();
    let e = Return::initiate(id.clone(), src.clone(), &[(sku("TEE"), 4)], s, |_| 0);
    writeln!(out, "{e:?}").unwrap();
    let e = Return::initiate(id.clone(), src.clone(), &[(sku("TEE"), 2)], s, |_| 2);
    writeln!(out, "{e:?}").unwrap();
    let e = Return::initiate(id.clone(), src.clone(), &[(sku("HAT"), 1)], s, |_| 0);
    writeln!(out, "{e:?}").unwrap();
    let mut r = Return::initiate(id, src, &[(sku("TEE"), 2), (sku("CAP"), 1)], s, |_| 0).unwrap();
    let store = loc("store-1");
    let cmds = r.receive(
        &store,
        &[
            (sku("TEE"), 1, Condition::Restock),
            (sku("CAP"), 1, Condition::Damaged),
        ],
    );
    writeln!(out, "{cmds:?}").unwrap();
    let e = r.receive(&store, &[(sku("TEE"), 2, Condition::Restock)]);
    writeln!(out, "{e:?}").unwrap();
    let e = r.refund(eur("30.00"), eur("27.40"));
    writeln!(out, "{e:?}").unwrap();
    let cmds = r.exchange(&[(sku("TEE"), 1, store.clone())], Channel::Pos);
    writeln!(out, "{cmds:?} {:?}", r.status).unwrap();
    let e = r.receive(&store, &[(sku("TEE"), 1, Condition::Restock)]);
    writeln!(out, "{e:?}").unwrap();
    assert!(matches!(
        e,
        Err(ReturnError::InvalidState {
            status: ReturnStatus::Exchanged
        })
    ));
    expect![[r#"
        Err(ExceedsSold { sku: "TEE", sold: 3, returned: 0, requested: 4 })
        Err(ExceedsSold { sku: "TEE", sold: 3, returned: 2, requested: 2 })
        Err(NotSold { sku: "HAT" })
        Ok([("TEE", ReturnReceive { op: "ret.R1.0.0", location: "store-1", qty: 1, condition: Restock, sale: Some("X1") }), ("CAP", ReturnReceive { op: "ret.R1.0.1", location: "store-1", qty: 1, condition: Damaged, sale: Some("X1") })])
        Err(ExceedsInitiated { sku: "TEE", initiated: 2, received: 1, requested: 2 })
        Err(RefundTooLarge { max: Money { amount: 27.40, currency: EUR } })
        Ok([("TEE", Hold { hold: "exc.R1.0", location: "store-1", qty: 1, channel: Pos, ttl_ms: None })]) Exchanged
        Err(InvalidState { status: Exchanged })
    "#]].assert_eq(&out);
}

#[test]
fn bundles_expand_and_take_the_scarcest_component() {
    let b = Bundle::new(
        sku("KIT"),
        vec![
            Component {
                sku: sku("TEE"),
                qty: 2,
            },
            Component {
                sku: sku("CAP"),
                qty: 1,
            },
        ],
    )
    .unwrap();
    let avail: BTreeMap<Sku, i64> = [(sku("TEE"), 7), (sku("CAP"), 10)].into_iter().collect();
    let mut out = format!(
        "available {}\nexpand 3 {:?}\n",
        b.available(|s| avail.get(s).copied().unwrap_or(0)),
        b.expand(3)
    );
    writeln!(
        out,
        "available with CAP at -2: {}",
        b.available(|s| if s.as_str() == "CAP" { -2 } else { 7 })
    )
    .unwrap();
    let bundles: BTreeMap<Sku, Bundle> = [(sku("KIT"), b.clone())].into_iter().collect();
    writeln!(
        out,
        "{:?}",
        expand_lines(&[(sku("KIT"), 2), (sku("TEE"), 1)], &bundles)
    )
    .unwrap();
    writeln!(out, "{:?}", b.expand(600_000)).unwrap();
    // A bundle among the components: refused, by the predicate or by expansion.
    let nest = Bundle::new(
        sku("BIG"),
        vec![Component {
            sku: sku("KIT"),
            qty: 1,
        }],
    )
    .unwrap();
    writeln!(
        out,
        "{:?} {:?}",
        nest.check_not_nested(|s| bundles.contains_key(s)),
        b.check_not_nested(|s| bundles.contains_key(s))
    )
    .unwrap();
    let mut with_nest = bundles.clone();
    with_nest.insert(sku("BIG"), nest);
    writeln!(out, "{:?}", expand_lines(&[(sku("BIG"), 1)], &with_nest)).unwrap();
    for comps in [
        vec![],
        vec![Component {
            sku: sku("KIT"),
            qty: 1,
        }],
        vec![Component {
            sku: sku("A"),
            qty: 0,
        }],
        vec![
            Component {
                sku: sku("A"),
                qty: 1,
            },
            Component {
                sku: sku("A"),
                qty: 2,
            },
        ],
    ] {
        let e: Result<Bundle, BundleError> = Bundle::new(sku("KIT"), comps);
        writeln!(out, "{:?}", e.err()).unwrap();
    }
    expect![[r#"
        available 3
        expand 3 Ok([("TEE", 6), ("CAP", 3)])
        available with CAP at -2: 0
        Ok([("TEE", 5), ("CAP", 2)])
        Err(TooManyUnits { sku: "TEE", qty: 1200000 })
        Err(NestedBundle { sku: "KIT" }) Ok(())
        Err(NestedBundle { sku: "KIT" })
        Some(NoComponents)
        Some(ContainsItself)
        Some(QtyOutOfRange { sku: "A", qty: 0 })
        Some(DuplicateComponent { sku: "A" })
    "#]]
    .assert_eq(&out);
}

#[test]
fn fulfillment_rules() {
    let site = |id: &str, lat: f64, lon: f64, pickup: bool| Site {
        id: loc(id),
        point: GeoPoint::from_degrees(lat, lon).unwrap(),
        ships_online: true,
        pickup,
    };
    // Paris, Lyon, Marseille.
    let sites = vec![
        site("paris", 48.8566, 2.3522, true),
        site("lyon", 45.764, 4.8357, false),
        site("marseille", 43.2965, 5.3698, true),
    ];
    let stock: BTreeMap<(&str, &str), i64> = [
        (("TEE", "paris"), 1),
        (("TEE", "lyon"), 5),
        (("CAP", "lyon"), 0),
        (("CAP", "marseille"), 4),
        (("TEE", "marseille"), 5),
    ]
    .into_iter()
    .collect();
    let avail =
        |s: &Sku, l: &LocationId| stock.get(&(s.as_str(), l.as_str())).copied().unwrap_or(0);
    let lines = |v: &[(&str, i64)]| {
        v.iter()
            .map(|(s, q)| Line {
                sku: sku(s),
                qty: *q,
            })
            .collect::<Vec<_>>()
    };
    let dijon = GeoPoint::from_degrees(47.322, 5.0415).unwrap();
    let mut out = format!(
        "paris-lyon {} m, paris-marseille {} m\n",
        distance_m(sites[0].point, sites[1].point),
        distance_m(sites[0].point, sites[2].point)
    );
    for (name, rule, l) in [
        (
            "nearest, all in one",
            Rule::Nearest(dijon),
            lines(&[("TEE", 2)]),
        ),
        (
            "nearest, split",
            Rule::Nearest(dijon),
            lines(&[("TEE", 5), ("CAP", 1), ("TEE", 1)]),
        ),
        ("nearest, short", Rule::Nearest(dijon), lines(&[("CAP", 9)])),
        (
            "single",
            Rule::SingleLocation(loc("lyon")),
            lines(&[("TEE", 2), ("CAP", 1)]),
        ),
        (
            "pickup",
            Rule::Pickup(loc("marseille")),
            lines(&[("TEE", 2), ("CAP", 1)]),
        ),
        (
            "pickup not offered",
            Rule::Pickup(loc("lyon")),
            lines(&[("TEE", 1)]),
        ),
        (
            "unknown",
            Rule::SingleLocation(loc("nowhere")),
            lines(&[("TEE", 1)]),
        ),
        ("no lines", Rule::Nearest(dijon), lines(&[])),
    ] {
        writeln!(out, "{name}: {:?}", allocate(&rule, &l, &sites, avail)).unwrap();
    }
    writeln!(
        out,
        "{:?} {:?}",
        GeoPoint::from_degrees(91.0, 0.0),
        GeoPoint::from_degrees(f64::NAN, 0.0)
    )
    .unwrap();
    expect![[r#"
        paris-lyon 391989 m, paris-marseille 661361 m
        nearest, all in one: Ok([Allocation { sku: "TEE", qty: 2, location: "lyon" }])
        nearest, split: Ok([Allocation { sku: "TEE", qty: 5, location: "lyon" }, Allocation { sku: "CAP", qty: 1, location: "marseille" }, Allocation { sku: "TEE", qty: 1, location: "paris" }])
        nearest, short: Err(InsufficientStock([Shortage { sku: "CAP", location: Some("marseille"), requested: 9, available: 4 }]))
        single: Err(InsufficientStock([Shortage { sku: "CAP", location: Some("lyon"), requested: 1, available: 0 }]))
        pickup: Ok([Allocation { sku: "TEE", qty: 2, location: "marseille" }, Allocation { sku: "CAP", qty: 1, location: "marseille" }])
        pickup not offered: Err(LocationNotEligible("lyon"))
        unknown: Err(UnknownLocation("nowhere"))
        no lines: Err(NoLines)
        None None
    "#]].assert_eq(&out);
}

#[test]
fn money_is_exact_and_rounds_explicitly() {
    let mut out = String::new();
    let p = eur("19.90");
    writeln!(out, "{}", p.checked_mul_qty(3).unwrap()).unwrap();
    writeln!(
        out,
        "{}",
        p.checked_mul_rate(Decimal::new(2, 1), RoundingStrategy::MidpointNearestEven)
            .unwrap()
    )
    .unwrap();
    writeln!(
        out,
        "{}",
        eur("0.25")
            .checked_mul_rate(Decimal::new(5, 1), RoundingStrategy::MidpointNearestEven)
            .unwrap()
    )
    .unwrap();
    writeln!(
        out,
        "{}",
        eur("0.25")
            .checked_mul_rate(Decimal::new(5, 1), RoundingStrategy::MidpointAwayFromZero)
            .unwrap()
    )
    .unwrap();
    for (a, c) in [
        ("19.999", "EUR"),
        ("100", "JPY"),
        ("1.5", "JPY"),
        ("1.234", "KWD"),
        ("x", "EUR"),
        ("1", "eur"),
        ("1e3", "EUR"),
    ] {
        writeln!(
            out,
            "{a} {c}: {:?}",
            Money::parse(a, c).map(|m| m.to_string())
        )
        .unwrap();
    }
    let big = Money::parse("79228162514264337593543950335", "EUR").unwrap();
    writeln!(out, "{:?}", big.checked_add(eur("1"))).unwrap();
    writeln!(
        out,
        "{:?}",
        eur("1").checked_add(Money::parse("1", "USD").unwrap())
    )
    .unwrap();
    assert_eq!(big.checked_mul_qty(2), Err(MoneyError::Overflow));
    let json = serde_json::to_string(&p).unwrap();
    writeln!(
        out,
        "{json} -> {:?}",
        serde_json::from_str::<Money>(&json).unwrap()
    )
    .unwrap();
    expect![[r#"
        59.70 EUR
        3.98 EUR
        0.12 EUR
        0.13 EUR
        19.999 EUR: Err(TooPrecise { max_places: 2 })
        100 JPY: Ok("100 JPY")
        1.5 JPY: Err(TooPrecise { max_places: 0 })
        1.234 KWD: Ok("1.234 KWD")
        x EUR: Err(InvalidAmount)
        1 eur: Err(InvalidCurrency)
        1e3 EUR: Err(InvalidAmount)
        Err(Overflow)
        Err(CurrencyMismatch)
        {"amount":"19.90","currency":"EUR"} -> Money { amount: 19.90, currency: EUR }
    "#]]
    .assert_eq(&out);
}
