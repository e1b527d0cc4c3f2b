//! The order coordinator against real `SkuState`s over a network the test
//! drives message by message.
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::ids::OpId;
use crate::sku::SkuState;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}
fn loc(s: &str) -> LocationId {
    LocationId::parse(s).unwrap()
}

struct World {
    now: Timestamp,
    skus: BTreeMap<Sku, SkuState>,
}

impl World {
    fn new(stock: &[(&str, &str, Qty)]) -> World {
        let mut w = World {
            now: T0,
            skus: BTreeMap::new(),
        };
        for (i, (s, l, q)) in stock.iter().enumerate() {
            let st = w.skus.entry(sku(s)).or_default();
            let cmd = Command::Receive {
                op: OpId::parse(&format!("rcv.{i}")).unwrap(),
                location: loc(l),
                qty: *q,
            };
            for e in st.decide(w.now, &cmd).unwrap() {
                st.apply(&e);
            }
        }
        w
    }

    fn exec(&mut self, t: &Transmit) -> HoldReply {
        let now = self.now;
        let st = self.skus.entry(t.sku.clone()).or_default();
        for e in st.expire(now) {
            st.apply(&e);
        }
        let result = st.decide(now, &t.command);
        if let Ok(events) = &result {
            for e in events {
                st.apply(e);
            }
        }
        let hold = match &t.command {
            Command::Hold { hold, .. }
            | Command::Keep { hold }
            | Command::Commit { hold }
            | Command::Fulfill { hold }
            | Command::Release { hold } => hold.clone(),
            _ => unreachable!(),
        };
        HoldReply::from_sku(st, now, &hold, &result)
    }

    fn drive(&mut self, m: &mut OrderMachine) {
        for _ in 0..50 {
            let out: Vec<Transmit> = core::iter::from_fn(|| m.poll_transmit(self.now)).collect();
            if out.is_empty() {
                return;
            }
            for t in out {
                let reply = self.exec(&t);
                m.handle_reply(self.now, t.tag, reply);
            }
        }
    }

    fn pos(&self, s: &str, l: &str) -> (Qty, Qty, Qty) {
        let p = self.skus[&sku(s)].position_at(self.now, &loc(l));
        (p.on_hand, p.reserved, p.committed)
    }
}

fn order(id: &str, lines: &[(&str, Qty, u32)], parts: &[&str]) -> CreateOrder {
    let oid = OrderId::parse(id).unwrap();
    let parts: Vec<LocationId> = parts.iter().map(|p| loc(p)).collect();
    let l: Vec<(Sku, Qty, u32)> = lines.iter().map(|(s, q, p)| (sku(s), *q, *p)).collect();
    CreateOrder {
        lines: CreateOrder::lines_for(&oid, &parts, &l).unwrap(),
        id: oid,
        channel: Channel::Online,
        fp: 7,
        parts,
        from_reservation: false,
        actor: "admin".into(),
    }
}

#[test]
fn places_then_moves_every_part_with_its_stock_effect() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut m, t) =
        OrderMachine::new(w.now, order("o1", &[("A", 2, 0), ("B", 1, 0)], &["s1"])).unwrap();
    w.drive(&mut m);
    assert_eq!(m.outcome(t), Some(Ok(Done { created: true })));
    assert_eq!(w.pos("A", "s1"), (5, 2, 0));
    // Kept: no deadline any more.
    w.now = w.now.plus_ms(ORDER_PLACEMENT_TTL_MS * 2);
    assert_eq!(w.pos("A", "s1"), (5, 2, 0));
    let h = m
        .handle_transition(w.now, Target::All, OrderStatus::Paid, "till")
        .unwrap();
    let Handled::Started(t) = h else {
        panic!("{h:?}")
    };
    w.drive(&mut m);
    assert_eq!(m.outcome(t), Some(Ok(Done { created: false })));
    assert_eq!(w.pos("A", "s1"), (5, 0, 2));
    for to in [OrderStatus::ReadyToPick, OrderStatus::Packed] {
        assert!(matches!(
            m.handle_transition(w.now, Target::All, to, "x"),
            Ok(Handled::Done(_))
        ));
    }
    let err = m
        .handle_transition(w.now, Target::All, OrderStatus::Paid, "x")
        .unwrap_err();
    assert_eq!(err.code(), "invalid_transition");
    let Handled::Started(t) = m
        .handle_transition(w.now, Target::All, OrderStatus::Shipped, "x")
        .unwrap()
    else {
        panic!()
    };
    w.drive(&mut m);
    assert_eq!(m.outcome(t), Some(Ok(Done { created: false })));
    assert_eq!(w.pos("A", "s1"), (3, 0, 0));
    assert_eq!(w.pos("B", "s1"), (4, 0, 0));
    assert_eq!(m.status(), OrderStatus::Shipped);
    let h = m.history();
    assert_eq!(h.len(), 5);
    assert_eq!(h[0].from, None);
    assert_eq!(h[4].to, OrderStatus::Shipped);
    // Returned through a return, once.
    assert_eq!(m.handle_returned(w.now, None, "return:r1"), Ok(true));
    assert_eq!(m.handle_returned(w.now, None, "return:r1"), Ok(false));
    assert_eq!(m.status(), OrderStatus::Returned);
}

#[test]
fn a_short_line_releases_the_others_and_the_failure_stands() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 1)]);
    let req = order("o2", &[("A", 2, 0), ("B", 3, 0)], &["s1"]);
    let (mut m, t) = OrderMachine::new(w.now, req.clone()).unwrap();
    w.drive(&mut m);
    let err = m.outcome(t).unwrap().unwrap_err();
    assert_eq!(err.code(), "insufficient_stock");
    assert_eq!(err.shortages()[0].available, 1);
    assert_eq!(w.pos("A", "s1"), (5, 0, 0));
    assert_eq!(m.handle_create(w.now, &req), Err(err));
    let mut other = req;
    other.fp = 8;
    assert_eq!(m.handle_create(w.now, &other), Err(OrderFailure::Conflict));
}

#[test]
fn a_split_order_moves_its_parts_on_their_own_and_cancel_releases() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "w1", 5)]);
    let (mut m, _) = OrderMachine::new(
        w.now,
        order("o3", &[("A", 1, 0), ("B", 2, 1)], &["s1", "w1"]),
    )
    .unwrap();
    w.drive(&mut m);
    assert!(m.is_placed());
    m.handle_transition(w.now, Target::Part(1), OrderStatus::Paid, "x")
        .unwrap();
    w.drive(&mut m);
    assert_eq!(w.pos("B", "w1"), (5, 0, 2));
    assert_eq!(w.pos("A", "s1"), (5, 1, 0));
    assert_eq!(m.status(), OrderStatus::New);
    assert_eq!(
        m.handle_transition(w.now, Target::Part(4), OrderStatus::Paid, "x"),
        Err(OrderFailure::UnknownPart { part: 4 })
    );
    let Handled::Started(t) = m
        .handle_transition(w.now, Target::All, OrderStatus::Cancelled, "x")
        .unwrap()
    else {
        panic!()
    };
    w.drive(&mut m);
    assert_eq!(m.outcome(t), Some(Ok(Done { created: false })));
    assert_eq!(w.pos("B", "w1"), (5, 0, 0));
    assert_eq!(w.pos("A", "s1"), (5, 0, 0));
    assert_eq!(m.status(), OrderStatus::Cancelled);
}

#[test]
fn a_silent_sku_object_fails_placement_and_the_holds_lapse() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut m, t) =
        OrderMachine::new(w.now, order("o4", &[("A", 1, 0), ("B", 1, 0)], &["s1"])).unwrap();
    // Only A answers; B's messages are all lost.
    for _ in 0..MAX_PLACE_SENDS * 2 {
        while let Some(tx) = m.poll_transmit(w.now) {
            if tx.sku == sku("A") {
                let r = w.exec(&tx);
                m.handle_reply(w.now, tx.tag, r);
            }
        }
        if let Some(at) = m.poll_timeout() {
            w.now = at;
            m.handle_timeout(w.now);
        }
    }
    w.drive(&mut m);
    assert_eq!(m.outcome(t), Some(Err(OrderFailure::Unconfirmed)));
    assert_eq!(w.pos("A", "s1").1, 0);
    // Round trips survive serde.
    let json = serde_json::to_string(&m).unwrap();
    let back: OrderMachine = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn at_risk_marks_the_part_of_the_hold() {
    let mut w = World::new(&[("A", "s1", 5)]);
    let (mut m, _) = OrderMachine::new(w.now, order("o5", &[("A", 1, 0)], &["s1"])).unwrap();
    w.drive(&mut m);
    let hold = m.lines().next().unwrap().hold.clone();
    assert_eq!(
        parse_order_hold(&hold),
        Some((OrderId::parse("o5").unwrap(), 0))
    );
    assert!(m.handle_at_risk(&hold));
    assert!(!m.handle_at_risk(&hold));
    assert!(m.parts()[0].at_risk);
    assert_eq!(parse_order_hold(&HoldId::parse("res.1.x").unwrap()), None);
    assert_eq!(
        parse_order_hold(&HoldId::parse("ord.a.b.07").unwrap()),
        None
    );
    assert_eq!(
        parse_order_hold(&HoldId::parse("ord.a.b.7").unwrap()),
        Some((OrderId::parse("a.b").unwrap(), 7))
    );
}

#[test]
fn keep_makes_a_held_hold_permanent_and_is_idempotent() {
    let mut w = World::new(&[("A", "s1", 5)]);
    let hold = HoldId::parse("h1").unwrap();
    let hold_cmd = Command::Hold {
        hold: hold.clone(),
        location: loc("s1"),
        qty: 2,
        channel: Channel::Online,
        ttl_ms: Some(60_000),
    };
    let keep = Transmit {
        tag: Tag { line: 0, round: 0 },
        sku: sku("A"),
        command: Command::Keep { hold: hold.clone() },
    };
    // Not held: not found.
    assert_eq!(w.exec(&keep), HoldReply::NotFound);
    let hold_tx = Transmit {
        command: hold_cmd,
        ..keep.clone()
    };
    assert!(matches!(
        w.exec(&hold_tx),
        HoldReply::Held {
            expires_at: Some(_)
        }
    ));
    assert_eq!(w.exec(&keep), HoldReply::Held { expires_at: None });
    assert_eq!(w.exec(&keep), HoldReply::Held { expires_at: None });
    w.now = w.now.plus_ms(3_600_000);
    assert_eq!(w.pos("A", "s1"), (5, 2, 0));
    assert_eq!(w.skus[&sku("A")].next_deadline(), None);
    let _ = vec![0];
}

#[test]
fn a_part_ready_for_pickup_too_long_is_overdue_never_released() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s2", 5)]);
    let (mut m, _) = OrderMachine::new(
        w.now,
        order("o6", &[("A", 1, 0), ("B", 1, 1)], &["s1", "s2"]),
    )
    .unwrap();
    w.drive(&mut m);
    for to in [
        OrderStatus::Paid,
        OrderStatus::ReadyToPick,
        OrderStatus::Packed,
    ] {
        m.handle_transition(w.now, Target::All, to, "x").unwrap();
        w.drive(&mut m);
    }
    let ready = w.now;
    m.handle_transition(w.now, Target::Part(1), OrderStatus::ReadyForPickup, "x")
        .unwrap();
    let h = 3_600_000;
    assert_eq!(m.next_overdue(h, &[]), Some(ready.plus_ms(h)));
    assert_eq!(m.overdue_parts(ready.plus_ms(h - 1), h), Vec::<u32>::new());
    assert_eq!(m.overdue_parts(ready.plus_ms(h), h), vec![1]);
    assert_eq!(m.next_overdue(h, &[1]), None);
    // Nothing was released: the units stay committed.
    w.now = ready.plus_ms(2 * h);
    assert_eq!(w.pos("B", "s2"), (5, 0, 1));
    // Collected: no longer overdue.
    m.handle_transition(w.now, Target::Part(1), OrderStatus::Collected, "x")
        .unwrap();
    w.drive(&mut m);
    assert_eq!(m.overdue_parts(w.now, h), Vec::<u32>::new());
    assert_eq!(w.pos("B", "s2"), (4, 0, 0));
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Key(alloc::string::String, u8);

impl crate::order::WaitKey for Key {
    fn key(&self) -> &str {
        &self.0
    }
}

fn key(k: &str, fp: u8) -> Key {
    Key(k.into(), fp)
}

/// An order of `qty` A at s1 (5 on hand), placed, with its move to paid
/// started and not yet sent.
fn paid_started(id: &str, qty: Qty) -> (World, OrderMachine, Ticket) {
    let mut w = World::new(&[("A", "s1", 5)]);
    let (mut m, _) = OrderMachine::new(w.now, order(id, &[("A", qty, 0)], &["s1"])).unwrap();
    w.drive(&mut m);
    let Handled::Started(t) = m
        .handle_transition(w.now, Target::All, OrderStatus::Paid, "till")
        .unwrap()
    else {
        panic!("paid is a move")
    };
    (w, m, t)
}

#[test]
fn a_key_waiting_on_a_move_a_crash_cut_off_gets_the_outcome_the_alarm_reached() {
    use crate::order::Waits;
    let (mut w, m, t) = paid_started("o9", 2);
    let mut waits: Waits<Key> = Waits::default();
    waits.wait(key("k1", 1), t);
    // Saved before the first message; the request dies with the object.
    let saved = serde_json::to_string(&(&m, &waits)).unwrap();
    // Stored as [[key, ticket], ...] (the Order object's rows already hold it).
    assert!(saved.contains(r#"[[["k1",1],"#), "{saved}");
    let (mut m, mut waits): (OrderMachine, Waits<Key>) = serde_json::from_str(&saved).unwrap();
    // A retry of the same key while the move runs: still waiting, no answer.
    assert_eq!(waits.get("k1"), Some(&key("k1", 1)));
    assert!(waits.settle(&m).is_empty());
    assert_eq!(waits.len(), 1);
    // The alarm resends and finishes the move.
    w.drive(&mut m);
    assert_eq!(m.moving(), None);
    assert_eq!(w.pos("A", "s1"), (5, 0, 2));
    let settled = waits.settle(&m);
    assert_eq!(settled, vec![(key("k1", 1), Ok(Done { created: false }))]);
    assert!(waits.is_empty());
}

#[test]
fn a_resend_renews_every_waiting_ticket_and_the_oldest_key_goes_past_the_bound() {
    use crate::order::{Waits, MAX_WAITING_KEYS};
    let (mut w, mut m, t) = paid_started("o10", 1);
    let mut waits: Waits<Key> = Waits::default();
    waits.wait(key("k1", 1), t);
    waits.wait(key("k2", 2), Ticket(t.0 + 1));
    // Both wait on the newest ticket; a key waits once.
    waits.wait(key("k1", 1), Ticket(t.0 + 1));
    assert_eq!(waits.len(), 2);
    // Bounded: the oldest goes.
    for i in 0..MAX_WAITING_KEYS + 3 {
        waits.wait(key(&alloc::format!("x{i}"), 0), t);
    }
    assert_eq!(waits.len(), MAX_WAITING_KEYS);
    assert_eq!(waits.get("k1"), None);
    let mut waits: Waits<Key> = Waits::default();
    waits.wait(key("k3", 3), t);
    // Every message of the move lost until the machine stops resending.
    for _ in 0..200 {
        while m.poll_transmit(w.now).is_some() {}
        match m.poll_timeout() {
            Some(at) => {
                w.now = at;
                m.handle_timeout(w.now);
            }
            None => break,
        }
    }
    // Not known to have happened: the move still runs and the key waits.
    assert_eq!(m.outcome(t), None);
    assert!(m.moving().is_some());
    assert!(waits.settle(&m).is_empty());
    assert_eq!(waits.len(), 1);
    // The key's retry resends the move under a new ticket, which every
    // waiting key takes; this time the SKU object answers.
    let Handled::Started(t2) = m
        .handle_transition(w.now, Target::All, OrderStatus::Paid, "till")
        .unwrap()
    else {
        panic!("the running move is resent")
    };
    waits.wait(key("k3", 3), t2);
    w.drive(&mut m);
    assert_eq!(m.outcome(t), Some(Err(OrderFailure::Superseded)));
    assert_eq!(
        waits.settle(&m),
        vec![(key("k3", 3), Ok(Done { created: false }))]
    );
    assert_eq!(w.pos("A", "s1"), (5, 0, 1));
}

#[test]
fn a_key_waiting_on_a_placement_that_ended_unconfirmed_is_free_again() {
    use crate::order::Waits;
    let mut w = World::new(&[("A", "s1", 5)]);
    let (mut m, t) = OrderMachine::new(w.now, order("o11", &[("A", 1, 0)], &["s1"])).unwrap();
    let mut waits: Waits<Key> = Waits::default();
    waits.wait(key("k4", 4), t);
    for _ in 0..MAX_PLACE_SENDS * 2 {
        while m.poll_transmit(w.now).is_some() {}
        if let Some(at) = m.poll_timeout() {
            w.now = at;
            m.handle_timeout(w.now);
        }
    }
    w.drive(&mut m);
    assert_eq!(m.outcome(t), Some(Err(OrderFailure::Unconfirmed)));
    assert!(!OrderFailure::Unconfirmed.is_final() && OrderFailure::Conflict.is_final());
    assert!(waits.settle(&m).is_empty());
    assert!(waits.is_empty(), "the key is handled afresh when retried");
}
