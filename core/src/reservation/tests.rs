//! Edge cases of the coordinator, driven against real `SkuState`s over a
//! network the test controls message by message.
use alloc::collections::BTreeMap;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::fulfillment::{FulfillmentError, GeoPoint, Line, Site};
use crate::ids::OpId;
use crate::sku::{Event, SkuState};

const T0: Timestamp = Timestamp(1_700_000_000_000);
const TTL: i64 = 60_000;

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}
fn loc(s: &str) -> LocationId {
    LocationId::parse(s).unwrap()
}

/// SKU objects and a clock.
struct World {
    now: Timestamp,
    skus: BTreeMap<Sku, SkuState>,
    log: Vec<Event>,
}

impl World {
    /// `stock`: (sku, location, units received).
    fn new(stock: &[(&str, &str, Qty)]) -> World {
        let mut w = World {
            now: T0,
            skus: BTreeMap::new(),
            log: Vec::new(),
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

    /// The SKU object's side: expire, decide, apply, answer.
    fn exec(&mut self, t: &Transmit) -> HoldReply {
        let now = self.now;
        let st = self.skus.entry(t.sku.clone()).or_default();
        for e in st.expire(now) {
            st.apply(&e);
            self.log.push(e);
        }
        let result = st.decide(now, &t.command);
        if let Ok(events) = &result {
            for e in events {
                st.apply(e);
                self.log.push(e.clone());
            }
        }
        let hold = match &t.command {
            Command::Hold { hold, .. }
            | Command::Extend { hold, .. }
            | Command::Release { hold } => hold.clone(),
            _ => unreachable!(),
        };
        HoldReply::from_sku(st, now, &hold, &result)
    }

    /// Sends everything and feeds every answer back until nothing is left to send now.
    fn drive(&mut self, r: &mut Reservation) {
        while let Some(t) = r.poll_transmit(self.now) {
            let reply = self.exec(&t);
            r.handle_reply(self.now, t.tag, reply);
        }
    }

    fn sent(&self, r: &mut Reservation) -> Vec<Transmit> {
        core::iter::from_fn(|| r.poll_transmit(self.now)).collect()
    }

    fn reserved(&self, s: &str, l: &str) -> Qty {
        self.skus[&sku(s)].position_at(self.now, &loc(l)).reserved
    }

    fn tick(&mut self, ms: i64) {
        self.now = self.now.plus_ms(ms);
    }
}

fn line(s: &str, q: Qty, l: &str) -> ReservationLine {
    ReservationLine {
        sku: sku(s),
        qty: q,
        location: loc(l),
    }
}

fn req(id: &str, lines: Vec<ReservationLine>, fp: u64) -> CreateRequest {
    CreateRequest {
        id: ReservationId::parse(id).unwrap(),
        lines,
        ttl_ms: TTL,
        channel: Channel::Online,
        fp,
    }
}

fn cart() -> Vec<ReservationLine> {
    vec![line("A", 2, "s1"), line("B", 1, "s1")]
}

fn started(h: Result<Handled, ReservationError>) -> Ticket {
    match h {
        Ok(Handled::Started(t)) => t,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// Creates and drives `cart()` to active in a world with stock.
fn active() -> (World, Reservation, Ticket) {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, t) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    w.drive(&mut r);
    (w, r, t)
}

fn roundtrip(r: &Reservation) -> Reservation {
    let json = serde_json::to_string(r).unwrap();
    let back: Reservation = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, r);
    back
}

#[test]
fn all_held_is_active_until_the_earliest_deadline() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, t) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    assert_eq!(r.status(w.now), Status::Pending);
    assert_eq!(r.outcome(w.now, t), None);
    let first = r.poll_transmit(w.now).unwrap();
    assert_eq!(
        first.tag,
        Tag {
            line: 0,
            attempt: 1,
            round: 1
        }
    );
    let reply = w.exec(&first);
    w.tick(500); // B is held later, so its deadline is later
    r.handle_reply(w.now, first.tag, reply);
    w.drive(&mut r);
    let done = r.outcome(w.now, t).unwrap().unwrap();
    assert!(done.created);
    assert_eq!(done.view.status, Status::Active);
    assert_eq!(r.expires_at(), Some(T0.plus_ms(TTL)));
    assert_eq!(r.hold_id().as_str(), "res.1.r1");
    assert_eq!((w.reserved("A", "s1"), w.reserved("B", "s1")), (2, 1));
    assert_eq!(r.poll_timeout(), Some(T0.plus_ms(TTL)));
    // Never later than expires_at.
    assert_eq!(r.status(T0.plus_ms(TTL - 1)), Status::Active);
    assert_eq!(r.status(T0.plus_ms(TTL)), Status::Expired);
    roundtrip(&r);
}

#[test]
fn a_short_line_releases_every_line_and_fails() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 0)]);
    let (mut r, t) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    w.drive(&mut r);
    assert_eq!(
        r.outcome(w.now, t),
        Some(Err(ReservationError::Insufficient(vec![Shortage {
            sku: sku("B"),
            location: Some(loc("s1")),
            requested: 1,
            available: 0,
        }])))
    );
    assert_eq!(r.status(w.now), Status::Failed);
    assert_eq!(r.get(w.now), Err(ReservationError::NotFound));
    assert_eq!(w.reserved("A", "s1"), 0);
    assert!(!r.in_flight());

    // The same id again, stock arrived: attempt 2, new hold ids.
    let st = w.skus.get_mut(&sku("B")).unwrap();
    let cmd = Command::Receive {
        op: OpId::parse("rcv.more").unwrap(),
        location: loc("s1"),
        qty: 3,
    };
    for e in st.decide(w.now, &cmd).unwrap() {
        st.apply(&e);
    }
    let t2 = started(r.handle_create(w.now, req("r1", cart(), 7)));
    assert_ne!(t2, t);
    assert_eq!(r.outcome(w.now, t), Some(Err(ReservationError::Superseded)));
    w.drive(&mut r);
    assert!(r.outcome(w.now, t2).unwrap().unwrap().created);
    assert_eq!((r.attempt(), r.hold_id().as_str()), (2, "res.2.r1"));
    let old = HoldId::parse("res.1.r1").unwrap();
    assert_eq!(
        w.skus[&sku("A")].resolution(&old),
        Some(Resolution::Released)
    );
}

#[test]
fn same_id_other_content_conflicts_unless_failed() {
    let (w, mut r, _) = active();
    let other = vec![line("A", 3, "s1")];
    assert_eq!(
        r.handle_create(w.now, req("r1", other.clone(), 8)),
        Err(ReservationError::Conflict)
    );
    assert_eq!(
        r.handle_create(w.now, req("r2", cart(), 7)),
        Err(ReservationError::Conflict)
    );
    // The same content: the existing reservation, not created again.
    match r.handle_create(w.now, req("r1", cart(), 7)) {
        Ok(Handled::Done(d)) => assert!(!d.created && d.view.status == Status::Active),
        other => panic!("{other:?}"),
    }
    assert!(w.sent(&mut r).is_empty());
}

#[test]
fn after_a_failure_other_content_is_the_next_attempt() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 0)]);
    let (mut r, _) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    w.drive(&mut r);
    assert_eq!(r.status(w.now), Status::Failed);
    let t = started(r.handle_create(w.now, req("r1", vec![line("A", 1, "s1")], 8)));
    w.drive(&mut r);
    assert!(r.outcome(w.now, t).unwrap().unwrap().created);
    assert_eq!((r.attempt(), r.fp(), w.reserved("A", "s1")), (2, 8, 1));
}

#[test]
fn a_pending_create_resumes_with_the_same_hold_ids() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, t) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    // Both holds arrive, one answer is lost, and the coordinator restarts.
    let sent = w.sent(&mut r);
    let reply = w.exec(&sent[0]);
    w.exec(&sent[1]);
    r.handle_reply(w.now, sent[0].tag, reply);
    let mut r = roundtrip(&r);
    assert_eq!(r.status(w.now), Status::Pending);
    w.tick(200);
    assert_eq!(started(r.handle_create(w.now, req("r1", cart(), 7))), t);
    // The old round's late answer is ignored; the resent holds answer Exists.
    r.handle_reply(w.now, sent[1].tag, HoldReply::NotFound);
    let resent = w.sent(&mut r);
    assert_eq!(resent.len(), 2);
    assert!(resent.iter().all(|m| matches!(&m.command,
        Command::Hold { hold, .. } if hold.as_str() == "res.1.r1")));
    for m in &resent {
        let reply = w.exec(m);
        r.handle_reply(w.now, m.tag, reply);
    }
    assert!(r.outcome(w.now, t).unwrap().unwrap().created);
    assert_eq!(r.expires_at(), Some(T0.plus_ms(TTL)));
    let held = w.log.iter().filter(|e| matches!(e, Event::Held { .. }));
    assert_eq!(held.count(), 2);
}

#[test]
fn release_then_release_again_then_extend() {
    let (mut w, mut r, _) = active();
    let t = started(r.handle_release(w.now));
    w.drive(&mut r);
    let done = r.outcome(w.now, t).unwrap().unwrap();
    assert_eq!(done.view.status, Status::Released);
    assert_eq!((w.reserved("A", "s1"), w.reserved("B", "s1")), (0, 0));
    match r.handle_release(w.now) {
        Ok(Handled::Done(d)) => assert_eq!(d.view.status, Status::Released),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.handle_extend(w.now, TTL),
        Err(ReservationError::InvalidTransition {
            from: Status::Released,
            to: Status::Active
        })
    );
    assert_eq!(
        r.poll_timeout(),
        Some(w.now.plus_ms(RESERVATION_RETENTION_MS))
    );
    assert!(!r.is_reclaimable(w.now.plus_ms(RESERVATION_RETENTION_MS - 1)));
    assert!(r.is_reclaimable(w.now.plus_ms(RESERVATION_RETENTION_MS)));
}

#[test]
fn expiry_at_expires_at_gives_back_the_longer_holds() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, _) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    let sent = w.sent(&mut r);
    let a = w.exec(&sent[0]);
    w.tick(5_000);
    let b = w.exec(&sent[1]); // B's deadline is 5 s later than A's
    r.handle_reply(w.now, sent[0].tag, a);
    r.handle_reply(w.now, sent[1].tag, b);
    assert_eq!(r.expires_at(), Some(T0.plus_ms(TTL)));
    w.now = r.poll_timeout().unwrap();
    r.handle_timeout(w.now);
    assert_eq!(r.status(w.now), Status::Expired);
    let msgs = w.sent(&mut r);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].sku, sku("B"));
    let reply = w.exec(&msgs[0]);
    r.handle_reply(w.now, msgs[0].tag, reply);
    assert!(!r.in_flight());
    assert_eq!(w.reserved("B", "s1"), 0);
    assert_eq!(
        r.handle_release(w.now),
        Err(ReservationError::InvalidTransition {
            from: Status::Expired,
            to: Status::Released
        })
    );
}

#[test]
fn a_release_that_finds_a_lapsed_hold_is_expired() {
    let (w, mut r, _) = active();
    let t = started(r.handle_release(w.now));
    let msgs = w.sent(&mut r);
    r.handle_reply(
        w.now,
        msgs[0].tag,
        HoldReply::Resolved {
            how: Resolution::Released,
        },
    );
    r.handle_reply(
        w.now,
        msgs[1].tag,
        HoldReply::Resolved {
            how: Resolution::Expired,
        },
    );
    assert_eq!(
        r.outcome(w.now, t),
        Some(Err(ReservationError::InvalidTransition {
            from: Status::Expired,
            to: Status::Released
        }))
    );
    assert_eq!(r.status(w.now), Status::Expired);
}

#[test]
fn extend_moves_expires_at_to_the_earliest_new_deadline() {
    let (mut w, mut r, _) = active();
    w.tick(10_000);
    let t = started(r.handle_extend(w.now, 120_000));
    w.drive(&mut r);
    assert_eq!(
        r.outcome(w.now, t).unwrap().unwrap().view.status,
        Status::Active
    );
    assert_eq!(r.expires_at(), Some(w.now.plus_ms(120_000)));
    assert_eq!(r.ttl_ms(), 120_000);
    assert_eq!(
        r.handle_extend(w.now, 10),
        Err(ReservationError::TtlOutOfRange { ttl_ms: 10 })
    );
}

#[test]
fn an_extend_refused_by_a_sku_keeps_the_reservation() {
    let (w, mut r, _) = active();
    let t = started(r.handle_extend(w.now, 120_000));
    let msgs = w.sent(&mut r);
    let refusal = Refusal::TtlOutOfRange { ttl_ms: 120_000 };
    r.handle_reply(
        w.now,
        msgs[0].tag,
        HoldReply::Held {
            expires_at: Some(w.now.plus_ms(120_000)),
        },
    );
    r.handle_reply(
        w.now,
        msgs[1].tag,
        HoldReply::Refused {
            refusal: refusal.clone(),
        },
    );
    assert_eq!(
        r.outcome(w.now, t),
        Some(Err(ReservationError::Refused(refusal)))
    );
    assert_eq!(r.status(w.now), Status::Active);
    assert_eq!(r.expires_at(), Some(T0.plus_ms(TTL)));
    assert_eq!(r.ttl_ms(), TTL);
}

#[test]
fn an_extend_that_finds_a_lapsed_hold_expires_and_releases_the_rest() {
    let (w, mut r, _) = active();
    let t = started(r.handle_extend(w.now, 120_000));
    let msgs = w.sent(&mut r);
    r.handle_reply(
        w.now,
        msgs[0].tag,
        HoldReply::Resolved {
            how: Resolution::Expired,
        },
    );
    r.handle_reply(
        w.now,
        msgs[1].tag,
        HoldReply::Held {
            expires_at: Some(w.now.plus_ms(120_000)),
        },
    );
    assert_eq!(r.outcome(w.now, t), None, "waits for the release");
    let rel = w.sent(&mut r);
    assert_eq!(rel.len(), 1);
    assert_eq!(
        rel[0].command,
        Command::Release {
            hold: r.hold_id().clone()
        }
    );
    r.handle_reply(
        w.now,
        rel[0].tag,
        HoldReply::Resolved {
            how: Resolution::Released,
        },
    );
    assert_eq!(
        r.outcome(w.now, t),
        Some(Err(ReservationError::InvalidTransition {
            from: Status::Expired,
            to: Status::Active
        }))
    );
    assert_eq!(r.status(w.now), Status::Expired);
}

#[test]
fn silence_is_resent_with_backoff_then_given_up() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, t) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    let mut sends = Vec::new();
    for _ in 0..6 {
        let msgs = w.sent(&mut r);
        let release = matches!(msgs[0].command, Command::Release { .. });
        sends.push((w.now.0 - T0.0, msgs.len(), release));
        w.now = r.poll_timeout().unwrap();
        r.handle_timeout(w.now);
    }
    // Five sends of both holds, given up 31 s after the first: both released.
    assert_eq!(
        sends,
        [
            (0, 2, false),
            (1_000, 2, false),
            (3_000, 2, false),
            (7_000, 2, false),
            (15_000, 2, false),
            (31_000, 2, true)
        ]
    );
    assert_eq!(r.outcome(w.now, t), None);
}

#[test]
fn unanswered_holds_fail_as_unconfirmed_after_their_releases() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, t) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    // Only line 0 is ever delivered and answered.
    let mut held = false;
    for _ in 0..MAX_SENDS {
        for m in w.sent(&mut r) {
            if m.tag.line == 0 && !held {
                let reply = w.exec(&m);
                r.handle_reply(w.now, m.tag, reply);
                held = true;
            }
        }
        w.now = r.poll_timeout().unwrap();
        r.handle_timeout(w.now);
    }
    assert_eq!(r.status(w.now), Status::Pending, "releasing");
    w.drive(&mut r);
    assert_eq!(
        r.outcome(w.now, t),
        Some(Err(ReservationError::Unconfirmed))
    );
    assert_eq!(w.reserved("A", "s1"), 0);
    assert_eq!(r.status(w.now), Status::Failed);
}

#[test]
fn replies_that_are_not_the_question_are_ignored() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, t) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    let msgs = w.sent(&mut r);
    let before = r.clone();
    let held = HoldReply::Held {
        expires_at: Some(w.now.plus_ms(TTL)),
    };
    for tag in [
        Tag {
            line: 9,
            ..msgs[0].tag
        },
        Tag {
            attempt: 2,
            ..msgs[0].tag
        },
        Tag {
            round: 0,
            ..msgs[0].tag
        },
    ] {
        r.handle_reply(w.now, tag, held.clone());
    }
    assert_eq!(r, before);
    // A duplicate answer counts once; a release-style answer to a hold is taken as gone.
    let reply = w.exec(&msgs[0]);
    r.handle_reply(w.now, msgs[0].tag, reply.clone());
    let once = r.clone();
    r.handle_reply(w.now, msgs[0].tag, HoldReply::NotFound);
    assert_eq!(r, once);
    let reply = w.exec(&msgs[1]);
    r.handle_reply(w.now, msgs[1].tag, reply);
    assert!(r.outcome(w.now, t).unwrap().is_ok());
}

#[test]
fn releasing_a_pending_reservation_cancels_it() {
    let mut w = World::new(&[("A", "s1", 5), ("B", "s1", 5)]);
    let (mut r, _) = Reservation::new(w.now, req("r1", cart(), 7)).unwrap();
    for m in w.sent(&mut r) {
        w.exec(&m); // held, answers lost
    }
    let t = started(r.handle_release(w.now));
    assert_eq!(
        r.handle_create(w.now, req("r1", cart(), 7)),
        Err(ReservationError::Busy)
    );
    w.drive(&mut r);
    assert_eq!(r.outcome(w.now, t), Some(Err(ReservationError::NotFound)));
    assert_eq!((w.reserved("A", "s1"), w.reserved("B", "s1")), (0, 0));
    assert_eq!(r.status(w.now), Status::Failed);
    assert_eq!(r.handle_release(w.now), Err(ReservationError::NotFound));
    assert_eq!(r.handle_extend(w.now, TTL), Err(ReservationError::NotFound));
}

#[test]
fn bad_creates_are_refused_before_anything_is_sent() {
    let now = T0;
    let cases: Vec<(CreateRequest, ReservationError)> = vec![
        (req("r", vec![], 1), ReservationError::NoLines),
        (
            req("r", vec![line("A", 1, "s1"), line("A", 2, "s2")], 1),
            ReservationError::DuplicateSku(sku("A")),
        ),
        (
            req("r", vec![line("A", 0, "s1")], 1),
            ReservationError::QtyOutOfRange {
                sku: sku("A"),
                qty: 0,
            },
        ),
        (
            CreateRequest {
                ttl_ms: MAX_TTL_MS + 1,
                ..req("r", cart(), 1)
            },
            ReservationError::TtlOutOfRange {
                ttl_ms: MAX_TTL_MS + 1,
            },
        ),
        (
            req(
                "r",
                (0..=MAX_LINES)
                    .map(|i| line(&format!("S{i}"), 1, "s1"))
                    .collect(),
                1,
            ),
            ReservationError::TooManyLines { max: MAX_LINES },
        ),
    ];
    for (r, e) in cases {
        assert_eq!(Reservation::new(now, r).map(|_| ()), Err(e.clone()));
        assert!(!e.to_string().is_empty() && !e.code().is_empty());
    }
    assert!(ReservationId::parse("no spaces").is_err());
    assert!(serde_json::from_str::<ReservationId>("\"a/b\"").is_err());
}

#[test]
fn from_sku_answers_every_case() {
    let mut st = SkuState::new();
    let h = HoldId::parse("res.1.x").unwrap();
    let now = T0;
    let rcv = Command::Receive {
        op: OpId::parse("r").unwrap(),
        location: loc("s1"),
        qty: 3,
    };
    for e in st.decide(now, &rcv).unwrap() {
        st.apply(&e);
    }
    let hold = |qty, ttl| Command::Hold {
        hold: h.clone(),
        location: loc("s1"),
        qty,
        channel: Channel::Online,
        ttl_ms: Some(ttl),
    };
    let run = |st: &mut SkuState, now: Timestamp, cmd: &Command| {
        let res = st.decide(now, cmd);
        let reply = HoldReply::from_sku(st, now, &h, &res);
        // The same answer before and after the events are applied.
        if let Ok(events) = &res {
            for e in events {
                st.apply(e);
            }
        }
        assert_eq!(HoldReply::from_sku(st, now, &h, &res), reply);
        reply
    };
    let deadline = Some(now.plus_ms(TTL));
    assert_eq!(
        run(&mut st, now, &Command::Release { hold: h.clone() }),
        HoldReply::NotFound
    );
    assert_eq!(
        run(&mut st, now, &hold(4, TTL)),
        HoldReply::Insufficient {
            requested: 4,
            available: 3
        }
    );
    assert_eq!(
        run(&mut st, now, &hold(1, 1)),
        HoldReply::Refused {
            refusal: Refusal::TtlOutOfRange { ttl_ms: 1 }
        }
    );
    assert_eq!(
        run(&mut st, now, &hold(1, TTL)),
        HoldReply::Held {
            expires_at: deadline
        }
    );
    assert_eq!(
        run(&mut st, now, &hold(1, TTL)),
        HoldReply::Held {
            expires_at: deadline
        }
    );
    assert_eq!(
        run(&mut st, now, &hold(2, TTL)),
        HoldReply::Refused {
            refusal: Refusal::ExistsWithDifferentBody
        }
    );
    let later = now.plus_ms(TTL);
    assert_eq!(
        run(&mut st, later, &hold(1, TTL)),
        HoldReply::Resolved {
            how: Resolution::Expired
        },
        "lazy expiry"
    );
    assert_eq!(
        run(
            &mut st,
            now,
            &Command::Extend {
                hold: h.clone(),
                ttl_ms: 2 * TTL
            }
        ),
        HoldReply::Held {
            expires_at: Some(now.plus_ms(2 * TTL))
        }
    );
    assert_eq!(
        run(&mut st, now, &Command::Release { hold: h.clone() }),
        HoldReply::Resolved {
            how: Resolution::Released
        }
    );
    assert_eq!(
        run(&mut st, now, &Command::Release { hold: h.clone() }),
        HoldReply::Resolved {
            how: Resolution::Released
        }
    );
    let json = serde_json::to_string(&HoldReply::Refused {
        refusal: Refusal::TooManyHolds,
    })
    .unwrap();
    assert_eq!(
        json,
        r#"{"reply":"refused","refusal":{"refusal":"too_many_holds"}}"#
    );
}

fn site(id: &str, lat: i32, ships: bool, pickup: bool) -> Site {
    Site {
        id: loc(id),
        point: GeoPoint {
            lat_e6: lat,
            lon_e6: 0,
        },
        ships_online: ships,
        pickup,
    }
}

#[test]
fn placement_follows_the_fulfillment_and_the_split_rule() {
    let sites = [
        site("near", 1_000_000, true, false),
        site("far", 5_000_000, true, true),
        site("shop", 0, false, true),
    ];
    // near has A only, far has A and B.
    let stock = |s: &Sku, l: &LocationId| match (s.as_str(), l.as_str()) {
        ("A", "near") => 5,
        ("A", "far") => 1,
        ("B", "far") => 5,
        ("A" | "B", "shop") => 1,
        _ => 0,
    };
    let lines = [
        Line {
            sku: sku("A"),
            qty: 1,
        },
        Line {
            sku: sku("B"),
            qty: 1,
        },
        Line {
            sku: sku("A"),
            qty: 1,
        },
    ];
    let ship = |dest| Placement {
        kind: FulfillmentKind::Ship,
        location: None,
        destination: dest,
    };
    let at = |r: Result<Vec<ReservationLine>, PlacementError>| -> Vec<(String, Qty, String)> {
        r.unwrap()
            .into_iter()
            .map(|l| (l.sku.to_string(), l.qty, l.location.to_string()))
            .collect()
    };
    let home = Some(GeoPoint {
        lat_e6: 0,
        lon_e6: 0,
    });
    // A is merged to 2: only `near` has 2 A, only `far` has B.
    let by_line = at(place(&ship(home), Split::ByLine, &lines, &sites, stock));
    assert_eq!(
        by_line,
        [
            ("A".into(), 2, "near".into()),
            ("B".into(), 1, "far".into())
        ]
    );
    match place(&ship(home), Split::Never, &lines, &sites, stock) {
        Err(PlacementError::Fulfillment(FulfillmentError::InsufficientStock(s))) => {
            assert_eq!(s.len(), 1);
            assert_eq!(
                (s[0].sku.as_str(), s[0].location.as_ref().unwrap().as_str()),
                ("B", "near")
            );
        }
        other => panic!("{other:?}"),
    }
    // One A: `far` fills everything, even though `near` is nearer.
    let one = [
        Line {
            sku: sku("A"),
            qty: 1,
        },
        Line {
            sku: sku("B"),
            qty: 1,
        },
    ];
    assert_eq!(
        at(place(&ship(home), Split::Never, &one, &sites, stock)),
        [("A".into(), 1, "far".into()), ("B".into(), 1, "far".into())]
    );
    // No destination: id order (far < near).
    assert_eq!(
        at(place(&ship(None), Split::Never, &one, &sites, stock))[0].2,
        "far"
    );
    let pickup = |l: Option<&str>| Placement {
        kind: FulfillmentKind::Pickup,
        location: l.map(loc),
        destination: None,
    };
    assert_eq!(
        place(&pickup(None), Split::ByLine, &one, &sites, stock),
        Err(PlacementError::PickupNeedsLocation)
    );
    assert_eq!(
        place(&pickup(Some("near")), Split::ByLine, &one, &sites, stock),
        Err(PlacementError::Fulfillment(
            FulfillmentError::LocationNotEligible(loc("near"))
        ))
    );
    assert_eq!(
        at(place(
            &pickup(Some("shop")),
            Split::ByLine,
            &one,
            &sites,
            stock
        ))[1]
            .2,
        "shop"
    );
    assert!(matches!(
        place(&pickup(Some("shop")), Split::ByLine, &lines, &sites, stock),
        Err(PlacementError::Fulfillment(
            FulfillmentError::InsufficientStock(_)
        ))
    ));
    let no_ship = [site("shop", 0, false, true)];
    assert_eq!(
        place(&ship(home), Split::ByLine, &one, &no_ship, stock),
        Err(PlacementError::NoShippingLocation)
    );
    assert_eq!(channel_for(true), Channel::Pos);
}

#[test]
fn a_single_hold_reservation_takes_its_status_from_the_hold() {
    use crate::sku::{Command, SkuState};
    use crate::{Channel, LocationId, OpId};
    let t0 = Timestamp::from_ms(1_000_000);
    let loc = LocationId::parse("store-1").unwrap();
    let id = ReservationId::parse("cart-1").unwrap();
    let hold = hold_id(1, &id).unwrap();
    let mut st = SkuState::new();
    let run = |st: &mut SkuState, now: Timestamp, cmd: Command| {
        for e in st.decide(now, &cmd).unwrap() {
            st.apply(&e);
        }
    };
    run(
        &mut st,
        t0,
        Command::Receive {
            op: OpId::parse("r1").unwrap(),
            location: loc.clone(),
            qty: 5,
        },
    );
    let status = |st: &SkuState, now| single_hold_status(st, now, &hold, None, None);
    assert_eq!(
        status(&st, t0),
        Status::Active,
        "no hold yet, no record: not ended"
    );
    run(
        &mut st,
        t0,
        Command::Hold {
            hold: hold.clone(),
            location: loc,
            qty: 2,
            channel: Channel::Online,
            ttl_ms: Some(60_000),
        },
    );
    assert_eq!(status(&st, t0.plus_ms(59_999)), Status::Active);
    assert_eq!(
        status(&st, t0.plus_ms(60_000)),
        Status::Expired,
        "at its deadline, never later"
    );
    run(
        &mut st,
        t0.plus_ms(1_000),
        Command::Release { hold: hold.clone() },
    );
    assert_eq!(status(&st, t0.plus_ms(1_000)), Status::Released);
    // Forgotten by the state: the holder's record decides.
    let fresh = SkuState::new();
    assert_eq!(
        single_hold_status(
            &fresh,
            t0,
            &hold,
            Some(Status::Released),
            Some(t0.plus_ms(60_000))
        ),
        Status::Released
    );
    assert_eq!(
        single_hold_status(
            &fresh,
            t0.plus_ms(60_000),
            &hold,
            None,
            Some(t0.plus_ms(60_000))
        ),
        Status::Expired
    );
}

#[test]
fn a_converted_reservation_is_never_released_nor_extended_and_converts_once() {
    let (mut w, mut r, _) = active();
    let done = r.handle_convert(w.now, "o-1").unwrap();
    assert_eq!(done.view.status, Status::Converted);
    assert_eq!(done.view.converted_to.as_deref(), Some("o-1"));
    // The same order again: the same answer; another order: refused.
    assert_eq!(
        r.handle_convert(w.now, "o-1").unwrap().view.status,
        Status::Converted
    );
    assert!(matches!(
        r.handle_convert(w.now, "o-2"),
        Err(ReservationError::InvalidTransition {
            from: Status::Converted,
            ..
        })
    ));
    assert!(matches!(
        r.handle_release(w.now),
        Err(ReservationError::InvalidTransition {
            from: Status::Converted,
            to: Status::Released
        })
    ));
    assert!(matches!(
        r.handle_extend(w.now, TTL),
        Err(ReservationError::InvalidTransition {
            from: Status::Converted,
            ..
        })
    ));
    // Past its deadline nothing is sent: the order keeps (or lets lapse) the holds.
    w.tick(TTL + 1);
    r.handle_timeout(w.now);
    assert_eq!(r.poll_transmit(w.now), None);
    assert_eq!(r.status(w.now), Status::Converted);
    let r = roundtrip(&r);
    // An expired reservation does not convert.
    let (mut w2, mut r2, _) = active();
    w2.tick(TTL);
    assert!(matches!(
        r2.handle_convert(w2.now, "o-3"),
        Err(ReservationError::InvalidTransition {
            from: Status::Expired,
            ..
        })
    ));
    let _ = r;
}
