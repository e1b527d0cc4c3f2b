//! The snapshot form of `SkuState`: the Durable Object stores it (with a
//! format number) and loads it back, so its JSON is pinned here byte for
//! byte. A change to this expectation is a change of the stored format.
use expect_test::expect;
use omnistock_core::sku::Command;
use omnistock_core::*;

fn id<T>(r: Result<T, IdError>) -> T {
    r.unwrap()
}

/// A state that touches every table: sites (with movements, a count and the
/// unavailable buckets), active, committed and resolved holds, op ids, sales
/// from two terminals, a return, and transfers in every status.
fn busy_state(hash_key: u64) -> SkuState {
    let a = id(LocationId::parse("store-a"));
    let b = id(LocationId::parse("store-b"));
    let op = |s: &str| id(OpId::parse(s));
    let hold = |s: &str| id(HoldId::parse(s));
    let t0 = 1_700_000_000_000;
    let cmds: Vec<(i64, Command)> = vec![
        (
            0,
            Command::Receive {
                op: op("r1"),
                location: a.clone(),
                qty: 20,
            },
        ),
        (
            1,
            Command::Receive {
                op: op("r2"),
                location: b.clone(),
                qty: 5,
            },
        ),
        (
            2,
            Command::Adjust {
                op: op("a1"),
                location: a.clone(),
                delta: -1,
                reason: AdjustReason::Shrinkage,
                expected_version: None,
            },
        ),
        (
            3,
            Command::MarkUnavailable {
                op: op("m1"),
                location: a.clone(),
                bucket: UnavailableBucket::Damaged,
                delta: 2,
            },
        ),
        (
            4,
            Command::SetSafetyStock {
                op: op("s1"),
                location: a.clone(),
                qty: 1,
            },
        ),
        (
            5,
            Command::Hold {
                hold: hold("res.h1"),
                location: a.clone(),
                qty: 2,
                channel: Channel::Online,
                ttl_ms: Some(60_000),
            },
        ),
        (
            6,
            Command::Hold {
                hold: hold("ord.h2"),
                location: a.clone(),
                qty: 1,
                channel: Channel::Online,
                ttl_ms: None,
            },
        ),
        (
            7,
            Command::Commit {
                hold: hold("ord.h2"),
            },
        ),
        (
            8,
            Command::Hold {
                hold: hold("res.h3"),
                location: b.clone(),
                qty: 1,
                channel: Channel::Pos,
                ttl_ms: Some(30_000),
            },
        ),
        (
            9,
            Command::Release {
                hold: hold("res.h3"),
            },
        ),
        (
            10,
            Command::Sell {
                sale: id(SaleId::parse("sale-1")),
                terminal: id(TerminalId::parse("T1")),
                device_seq: 1,
                location: a.clone(),
                qty: 3,
                occurred_at: Timestamp::from_ms(t0 + 9),
            },
        ),
        (
            11,
            Command::Sell {
                sale: id(SaleId::parse("sale-2")),
                terminal: id(TerminalId::parse("T2")),
                device_seq: 7,
                location: b.clone(),
                qty: 1,
                occurred_at: Timestamp::from_ms(t0 + 10),
            },
        ),
        (
            12,
            Command::ReturnReceive {
                op: op("ret.1"),
                location: a.clone(),
                qty: 1,
                condition: Condition::Restock,
                sale: Some(id(SaleId::parse("sale-1"))),
            },
        ),
        (
            13,
            Command::Count {
                op: op("c1"),
                location: b.clone(),
                counted: 3,
                counted_at: Timestamp::from_ms(t0 + 12),
            },
        ),
        (
            14,
            Command::TransferShip {
                transfer: id(TransferId::parse("tr-1")),
                from: a.clone(),
                to: b.clone(),
                qty: 4,
            },
        ),
        (
            15,
            Command::TransferReceive {
                op: op("tri.1"),
                transfer: id(TransferId::parse("tr-1")),
                qty: 1,
                close: false,
            },
        ),
        (
            16,
            Command::TransferShip {
                transfer: id(TransferId::parse("tr-2")),
                from: a.clone(),
                to: b.clone(),
                qty: 1,
            },
        ),
        (
            17,
            Command::TransferReceive {
                op: op("tri.2"),
                transfer: id(TransferId::parse("tr-2")),
                qty: 0,
                close: true,
            },
        ),
        (
            18,
            Command::TransferCancel {
                transfer: id(TransferId::parse("tr-3")),
            },
        ),
    ];
    let mut st = SkuState::with_hash_key(hash_key);
    for (dt, cmd) in cmds {
        let now = Timestamp::from_ms(t0 + dt);
        for e in st.decide(now, &cmd).unwrap() {
            st.apply(&e);
            st.check_invariants().unwrap();
        }
    }
    // The first hold lapses and expires.
    let now = Timestamp::from_ms(t0 + 70_000);
    for e in st.expire(now) {
        st.apply(&e);
    }
    st.check_invariants().unwrap();
    st
}

#[test]
fn snapshot_json_is_pinned() {
    let st = busy_state(0);
    let json = serde_json::to_string(&st).unwrap();
    expect![[r#"{"sites":{"store-a":{"pos":{"on_hand":12,"reserved":0,"committed":1,"damaged":2,"quality_control":0,"safety_stock":1,"incoming":0,"version":12,"oversold":0},"flows":{"received":20,"adjusted":-1,"counted":0,"sold":3,"fulfilled":0,"returned":1,"transferred_out":5,"transferred_in":0,"shipped_to":0,"shortfall":0},"moves":[[1700000000000,20],[1700000000002,-1],[1700000000009,-3],[1700000000012,1],[1700000000014,-4],[1700000000016,-1]],"horizon":null,"last_counted_at":null},"store-b":{"pos":{"on_hand":4,"reserved":0,"committed":0,"damaged":0,"quality_control":0,"safety_stock":0,"incoming":3,"version":9,"oversold":0},"flows":{"received":5,"adjusted":0,"counted":-1,"sold":1,"fulfilled":0,"returned":0,"transferred_out":0,"transferred_in":1,"shipped_to":5,"shortfall":1},"moves":[[1700000000001,5],[1700000000010,-1],[1700000000015,1],[1700000000017,0]],"horizon":null,"last_counted_at":1700000000012}},"holds":[["ord.h2",{"location":"store-a","qty":1,"channel":"online","state":"committed","fp":3125296658258181940,"seq":2}]],"resolved":[["res.h3",{"how":"released","fp":8737858623713131219,"at":1700000000009}],["res.h1",{"how":"expired","fp":2744067869809098557,"at":1700000070000}]],"resolved_log":[[1700000000009,"res.h3"],[1700000070000,"res.h1"]],"ops":[["a1",[15756364054237957614,1700000000002]],["c1",[1081732326502946993,1700000000013]],["m1",[16728965655600274288,1700000000003]],["s1",[10957602456976450717,1700000000004]],["r1",[8147486292207605138,1700000000000]],["r2",[14327739245398164566,1700000000001]],["ret.1",[2286978072344670655,1700000000012]],["tri.1",[10425120305735071366,1700000000015]],["tri.2",[5583786756302016347,1700000000017]]],"ops_log":[[1700000000000,"r1"],[1700000000001,"r2"],[1700000000002,"a1"],[1700000000003,"m1"],[1700000000004,"s1"],[1700000000012,"ret.1"],[1700000000013,"c1"],[1700000000015,"tri.1"],[1700000000017,"tri.2"]],"sales":[["sale-1",{"fp":9984009182183776156,"qty":3,"returned":1}],["sale-2",{"fp":9795087174235198705,"qty":1,"returned":0}]],"sales_log":[[1700000000010,"sale-1"],[1700000000011,"sale-2"]],"terminals":[["T2",{"device_seq":7,"seen_at":1700000000011}],["T1",{"device_seq":1,"seen_at":1700000000010}]],"transfers":[["tr-2",{"fp":13465239229449551336,"from":"store-a","to":"store-b","shipped":1,"received":0,"shortfall":1,"status":"closed","at":1700000000017}],["tr-3",{"fp":0,"from":null,"to":null,"shipped":0,"received":0,"shortfall":0,"status":"cancelled","at":1700000000018}],["tr-1",{"fp":6180072190577946765,"from":"store-a","to":"store-b","shipped":4,"received":1,"shortfall":0,"status":"in_transit","at":1700000000015}]],"transfers_log":[[1700000000017,"tr-2"],[1700000000018,"tr-3"]],"open_transfers":1,"hold_seq":3,"events_applied":20,"clock":1700000070000}"#]].assert_eq(&json);
    let back: SkuState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, st);
    assert_eq!(back.check_invariants(), Ok(()));
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

#[test]
fn empty_snapshot_json_is_pinned() {
    let json = serde_json::to_string(&SkuState::new()).unwrap();
    expect![[r#"{"sites":{},"holds":[],"resolved":[],"resolved_log":[],"ops":[],"ops_log":[],"sales":[],"terminals":[],"transfers":[],"transfers_log":[],"open_transfers":0,"hold_seq":0,"events_applied":0,"clock":0}"#]].assert_eq(&json);
}

/// The tables' hash key changes nothing observable: the same events give the
/// same JSON and the same state hash under any key; a loaded state hashes
/// under key 0 until its owner sets the key again.
#[test]
fn the_hash_key_changes_nothing_observable() {
    let plain = busy_state(0);
    let json = serde_json::to_string(&plain).unwrap();
    for key in [1u64, 0x9e37_79b9_7f4a_7c15, u64::MAX] {
        let keyed = busy_state(key);
        assert_eq!(keyed.hash_key(), key);
        assert_eq!(serde_json::to_string(&keyed).unwrap(), json);
        assert_eq!(keyed.state_hash(), plain.state_hash());
        assert_eq!(keyed, plain);
        let mut back: SkuState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.hash_key(), 0);
        back.set_hash_key(key);
        assert_eq!(back.hash_key(), key);
        assert_eq!(back, keyed);
        assert_eq!(back.check_invariants(), Ok(()));
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}

/// A snapshot written before the sale window (sales without their log,
/// terminals as bare sequences) is never taken for a good one: it fails to
/// decode, or decodes and fails `check_invariants`, and the shell replays the
/// event log instead (which rebuilds the window).
#[test]
fn a_snapshot_from_before_the_sale_window_is_refused() {
    let tail = r#""transfers":[],"transfers_log":[],"open_transfers":0,"hold_seq":0,"events_applied":1,"clock":1}"#;
    let head = r#"{"sites":{},"holds":[],"resolved":[],"resolved_log":[],"ops":[],"ops_log":[],"sales":[["s1",{"fp":1,"qty":1,"returned":0}]],"#;
    let with_terminal = format!(r#"{head}"terminals":[["T1",4]],{tail}"#);
    assert!(serde_json::from_str::<SkuState>(&with_terminal).is_err());
    let without_terminal = format!(r#"{head}"terminals":[],{tail}"#);
    let st: SkuState = serde_json::from_str(&without_terminal).unwrap();
    assert_eq!(
        st.check_invariants(),
        Err("the sale log is out of step with the sales")
    );
}
