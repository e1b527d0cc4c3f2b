//! Unit tests of the return coordinator against real SKU states.
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::case::*;
use super::ReturnSource;
use crate::ids::{LocationId, OpId, ReturnId, SaleId, Sku, TerminalId};
use crate::money::{Currency, Money};
use crate::sku::{Command, Condition, SkuState};
use crate::time::Timestamp;

const T0: i64 = 1_700_000_000_000;

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}
fn loc(s: &str) -> LocationId {
    LocationId::parse(s).unwrap()
}
fn eur(a: &str) -> Money {
    Money::parse(a, "EUR").unwrap()
}
fn t(ms: i64) -> Timestamp {
    Timestamp::from_ms(T0 + ms)
}

/// A SKU state that sold `qty` units in sale `s1` at store-1.
fn sold(qty: i64) -> SkuState {
    let mut st = SkuState::new();
    let cmds = [
        Command::Receive {
            op: OpId::parse("r1").unwrap(),
            location: loc("store-1"),
            qty: 10,
        },
        Command::Sell {
            sale: SaleId::parse("s1").unwrap(),
            terminal: TerminalId::parse("t1").unwrap(),
            device_seq: 1,
            location: loc("store-1"),
            qty,
            occurred_at: t(0),
        },
    ];
    for c in &cmds {
        let ev = st.decide(t(0), c).unwrap();
        for e in &ev {
            st.apply(e);
        }
    }
    st
}

fn case(lines: &[(&str, i64, &str)]) -> ReturnCase {
    let req = InitiateRequest {
        id: ReturnId::parse("ret-1").unwrap(),
        source: ReturnSource::Sale(SaleId::parse("s1").unwrap()),
        lines: lines
            .iter()
            .map(|(s, q, _)| ReturnLine {
                sku: sku(s),
                qty: *q,
                reason: "too small".to_string(),
            })
            .collect(),
        fp: 7,
    };
    let claim = Claim {
        currency: Currency::parse("EUR").unwrap(),
        lines: lines
            .iter()
            .map(|(s, q, paid)| ClaimedLine {
                sku: sku(s),
                qty: *q,
                location: loc("store-1"),
                paid: eur(paid),
            })
            .collect(),
    };
    ReturnCase::new(t(0), req, &claim).unwrap()
}

fn receive(
    c: &mut ReturnCase,
    request: u64,
    lines: &[(&str, i64, Condition)],
) -> Result<Ticket, CaseError> {
    c.handle_receive(
        t(1),
        ReceiveRequest {
            request,
            fp: request * 1000 + lines.iter().map(|l| l.1 as u64).sum::<u64>(),
            location: loc("store-1"),
            lines: lines
                .iter()
                .map(|(s, q, cond)| ReceiveLine {
                    sku: sku(s),
                    qty: *q,
                    condition: *cond,
                })
                .collect(),
        },
    )
}

/// Delivers every message to `st` (one SKU) and feeds the replies back.
fn deliver(c: &mut ReturnCase, st: &mut SkuState, now: Timestamp) -> usize {
    let mut n = 0;
    while let Some(tx) = c.poll_transmit(now) {
        let r = st.decide(now, &tx.command);
        if let Ok(ev) = &r {
            for e in ev {
                st.apply(e);
            }
        }
        c.handle_reply(now, tx.tag, ReceiptReply::from_sku(&r));
        n += 1;
    }
    n
}

#[test]
fn receive_books_each_condition_once() {
    let mut st = sold(5);
    let mut c = case(&[("A", 4, "40.00")]);
    assert_eq!(c.status(), CaseStatus::Initiated);
    let tk = receive(
        &mut c,
        1,
        &[
            ("A", 2, Condition::Restock),
            ("A", 1, Condition::Damaged),
            ("A", 1, Condition::ReturnToVendor),
        ],
    )
    .unwrap();
    assert_eq!(c.status(), CaseStatus::Receiving);
    assert!(c.outcome(tk).is_none());
    assert_eq!(deliver(&mut c, &mut st, t(1)), 3);
    assert!(c.outcome(tk).unwrap().is_ok());
    let p = st.position(&loc("store-1"));
    assert_eq!((p.on_hand, p.damaged), (5 + 3, 1));
    assert_eq!(c.lines()[0].received(), 4);
    assert_eq!(c.status(), CaseStatus::Received);
    // The same request again: the same receipt, nothing sent twice takes effect.
    let again = receive(
        &mut c,
        1,
        &[
            ("A", 2, Condition::Restock),
            ("A", 1, Condition::Damaged),
            ("A", 1, Condition::ReturnToVendor),
        ],
    )
    .unwrap();
    assert_eq!(again, tk);
    assert_eq!(deliver(&mut c, &mut st, t(2)), 0);
    assert_eq!(st.position(&loc("store-1")).on_hand, 8);
    // Other content under the same request id.
    assert_eq!(
        receive(&mut c, 1, &[("A", 1, Condition::Restock)]),
        Err(CaseError::Conflict)
    );
}

#[test]
fn never_more_than_initiated_counting_pending() {
    let mut c = case(&[("A", 3, "30.00")]);
    receive(&mut c, 1, &[("A", 2, Condition::Restock)]).unwrap();
    // Not delivered yet: still counted.
    let e = receive(&mut c, 2, &[("A", 2, Condition::Restock)]).unwrap_err();
    assert!(matches!(
        e,
        CaseError::ExceedsInitiated {
            initiated: 3,
            received: 2,
            requested: 2,
            ..
        }
    ));
    assert!(matches!(
        receive(&mut c, 3, &[("B", 1, Condition::Restock)]),
        Err(CaseError::NotInReturn { .. })
    ));
    assert!(matches!(
        receive(&mut c, 4, &[("A", 0, Condition::Restock)]),
        Err(CaseError::QtyOutOfRange { .. })
    ));
    assert!(matches!(receive(&mut c, 5, &[]), Err(CaseError::NoLines)));
}

#[test]
fn lost_replies_are_resent_then_parked_and_resumed() {
    let mut st = sold(5);
    let mut c = case(&[("A", 2, "20.00")]);
    let tk = receive(&mut c, 1, &[("A", 2, Condition::Restock)]).unwrap();
    // Applied in the SKU, but the reply is lost, every time.
    let mut now = t(1);
    for _ in 0..MAX_SENDS {
        let tx = c.poll_transmit(now).unwrap();
        let r = st.decide(now, &tx.command);
        if let Ok(ev) = &r {
            for e in ev {
                st.apply(e);
            }
        }
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
    }
    assert!(c.poll_transmit(now).is_none());
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.outcome(tk), Some(Err(CaseError::Unconfirmed)));
    assert_eq!(st.position(&loc("store-1")).on_hand, 7);
    // The client retries: re-armed, answered Applied (Exists), booked once.
    receive(&mut c, 1, &[("A", 2, Condition::Restock)]).unwrap();
    assert_eq!(deliver(&mut c, &mut st, now), 1);
    assert!(c.outcome(tk).unwrap().is_ok());
    assert_eq!(st.position(&loc("store-1")).on_hand, 7);
    assert_eq!(c.lines()[0].restock, 2);
}

#[test]
fn a_refused_line_frees_its_units() {
    let mut st = sold(1);
    let mut c = case(&[("A", 2, "20.00")]);
    // The SKU knows the sale sold 1: it refuses 2.
    let tk = receive(&mut c, 1, &[("A", 2, Condition::Restock)]).unwrap();
    deliver(&mut c, &mut st, t(1));
    assert!(matches!(
        c.outcome(tk),
        Some(Err(CaseError::Refused { .. }))
    ));
    assert_eq!(c.status(), CaseStatus::Initiated);
    assert_eq!(c.booked_or_pending(&sku("A")), 0);
    receive(&mut c, 2, &[("A", 1, Condition::Restock)]).unwrap();
    deliver(&mut c, &mut st, t(2));
    assert_eq!(c.lines()[0].restock, 1);
}

#[test]
fn refunds_are_bounded_by_what_was_paid_for_received_units() {
    let mut st = sold(5);
    let mut c = case(&[("A", 3, "10.00")]);
    assert!(matches!(
        c.handle_refund(t(1), 1, eur("1.00")),
        Err(CaseError::InvalidState { .. })
    ));
    receive(&mut c, 1, &[("A", 2, Condition::Restock)]).unwrap();
    deliver(&mut c, &mut st, t(1));
    // 2 of 3 units received: 10.00 * 2 / 3 = 6.666.. -> 6.66.
    assert_eq!(c.refundable().unwrap(), eur("6.66"));
    assert_eq!(
        c.handle_refund(t(2), 2, eur("6.67")),
        Err(CaseError::RefundTooLarge { max: eur("6.66") })
    );
    assert_eq!(
        c.handle_refund(t(2), 3, Money::parse("1.00", "USD").unwrap()),
        Err(CaseError::BadAmount)
    );
    assert_eq!(
        c.handle_refund(t(2), 4, eur("0")),
        Err(CaseError::BadAmount)
    );
    c.handle_refund(t(2), 5, eur("5.00")).unwrap();
    c.handle_refund(t(2), 5, eur("5.00")).unwrap();
    assert_eq!(
        c.handle_refund(t(2), 5, eur("4.00")),
        Err(CaseError::Conflict)
    );
    assert_eq!(c.refunds().len(), 1);
    assert_eq!(c.refundable().unwrap(), eur("1.66"));
    assert_eq!(c.status(), CaseStatus::Refunded);
    // The last unit: the whole paid amount, exactly.
    receive(&mut c, 6, &[("A", 1, Condition::Damaged)]).unwrap();
    deliver(&mut c, &mut st, t(3));
    assert_eq!(c.refundable().unwrap(), eur("5.00"));
}

#[test]
fn exchange_difference_and_once_only() {
    let mut st = sold(5);
    let mut c = case(&[("A", 2, "30.00")]);
    receive(&mut c, 1, &[("A", 2, Condition::Restock)]).unwrap();
    deliver(&mut c, &mut st, t(1));
    assert_eq!(
        c.exchange_quote(eur("45.50")).unwrap(),
        (eur("30.00"), eur("15.50"))
    );
    assert_eq!(c.exchange_quote(eur("20.00")).unwrap().1, eur("-10.00"));
    c.check_exchange().unwrap();
    let x = c
        .record_exchange(t(2), "x.ret-1".into(), eur("45.50"))
        .unwrap();
    assert_eq!(x.difference, eur("15.50"));
    assert_eq!(c.status(), CaseStatus::Exchanged);
    assert!(c.check_exchange().is_err());
    assert!(c.handle_refund(t(3), 9, eur("1.00")).is_err());
    assert!(receive(&mut c, 9, &[("A", 1, Condition::Restock)]).is_err());
}

#[test]
fn the_row_round_trips_and_replies_to_other_rounds_or_lines_are_harmless() {
    let st = sold(5);
    let mut c = case(&[("A", 2, "20.00"), ("B", 1, "5.00")]);
    let tk = receive(&mut c, 1, &[("A", 2, Condition::Restock)]).unwrap();
    let tx = c.poll_transmit(t(1)).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    let mut back: ReturnCase = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    back.handle_reply(
        t(1),
        Tag {
            receipt: 9,
            line: 0,
            round: 0,
        },
        ReceiptReply::Applied,
    );
    back.handle_reply(
        t(1),
        Tag {
            receipt: 0,
            line: 7,
            round: 0,
        },
        ReceiptReply::Applied,
    );
    assert!(back.outcome(tk).is_none());
    let r = st.decide(t(1), &tx.command);
    back.handle_reply(t(1), tx.tag, ReceiptReply::from_sku(&r));
    back.handle_reply(t(1), tx.tag, ReceiptReply::Applied);
    assert_eq!(back.lines()[0].restock, 2);
    assert_eq!(back.lines()[1].received(), 0);
}

#[test]
fn bad_initiations_are_refused() {
    let claim = Claim {
        currency: Currency::parse("EUR").unwrap(),
        lines: vec![ClaimedLine {
            sku: sku("A"),
            qty: 1,
            location: loc("store-1"),
            paid: eur("1"),
        }],
    };
    let req = |lines: Vec<ReturnLine>| InitiateRequest {
        id: ReturnId::parse("r").unwrap(),
        source: ReturnSource::Sale(SaleId::parse("s1").unwrap()),
        lines,
        fp: 0,
    };
    let line = |s: &str, q: i64, why: &str| ReturnLine {
        sku: sku(s),
        qty: q,
        reason: why.to_string(),
    };
    assert_eq!(
        ReturnCase::new(t(0), req(Vec::new()), &claim),
        Err(CaseError::NoLines)
    );
    assert!(matches!(
        ReturnCase::new(t(0), req(vec![line("A", 0, "x")]), &claim),
        Err(CaseError::QtyOutOfRange { .. })
    ));
    assert!(matches!(
        ReturnCase::new(t(0), req(vec![line("A", 1, " ")]), &claim),
        Err(CaseError::BadReason { .. })
    ));
    assert_eq!(
        ReturnCase::new(t(0), req(vec![line("A", 2, "x")]), &claim),
        Err(CaseError::ClaimMismatch)
    );
    assert_eq!(
        ReturnCase::new(t(0), req(vec![line("B", 1, "x")]), &claim),
        Err(CaseError::ClaimMismatch)
    );
    assert!(ReturnCase::new(t(0), req(vec![line("A", 1, "x")]), &claim).is_ok());
}

#[test]
fn claim_shares_add_up_to_what_was_paid() {
    let paid = eur("10.00");
    let a = claim_share(paid, 3, 0, 1).unwrap();
    let b = claim_share(paid, 3, 1, 1).unwrap();
    let c = claim_share(paid, 3, 2, 1).unwrap();
    assert_eq!((a, b, c), (eur("3.33"), eur("3.33"), eur("3.34")));
    assert_eq!(claim_share(paid, 3, 0, 3).unwrap(), paid);
    assert_eq!(claim_share(paid, 0, 0, 1).unwrap(), eur("0"));
}

#[test]
fn bundle_prices_split_exactly() {
    let parts = split_paid(eur("10.00"), &[1, 2]).unwrap();
    assert_eq!(parts, vec![eur("3.33"), eur("6.67")]);
    assert_eq!(split_paid(eur("5.00"), &[1]).unwrap(), vec![eur("5.00")]);
    assert!(split_paid(eur("5.00"), &[]).unwrap().is_empty());
}
