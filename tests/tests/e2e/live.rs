//! `GET /v1/availability/live`: the WebSocket protocol against a real
//! `wrangler dev` (snapshot, a push per change with seq + 1, several SKUs on
//! one socket, resync, bounds and close codes, refusals, SIGKILL).
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error, Message, WebSocket};

use crate::harness::*;

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn ws_url(server: &Server, query: &str) -> String {
    format!(
        "ws://127.0.0.1:{}/v1/availability/live?{query}",
        server.port
    )
}

/// Connects; `Err(status)` when the upgrade is refused with an HTTP answer.
fn connect(url: &str, origin: Option<&str>) -> Result<Ws, (u16, String)> {
    let mut req = url.into_client_request().expect("request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", o.parse().expect("origin header"));
    }
    match tungstenite::connect(req) {
        Ok((mut ws, _)) => {
            if let MaybeTlsStream::Plain(s) = ws.get_mut() {
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
            }
            Ok(ws)
        }
        Err(Error::Http(r)) => {
            let body = r
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            Err((r.status().as_u16(), body))
        }
        Err(e) => panic!("connect {url}: {e}"),
    }
}

/// The next JSON frame; the close frame's code as `Err`.
fn next(ws: &mut Ws) -> Result<Value, (u16, String)> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                return Ok(serde_json::from_str(&t).unwrap_or(Value::String(t)));
            }
            Ok(Message::Close(Some(f))) => return Err((u16::from(f.code), f.reason.to_string())),
            Ok(Message::Close(None)) => return Err((1005, String::new())),
            Ok(_) => continue,
            Err(Error::ConnectionClosed) | Err(Error::AlreadyClosed) => {
                return Err((1006, "closed".into()))
            }
            Err(e) => return Err((1006, e.to_string())),
        }
    }
}

fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).expect("send");
}

/// The change of `sku` that comes next, skipping other frames.
fn change_of(ws: &mut Ws, sku: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let m = next(ws).expect("a frame");
        if m["type"] == "change" && m["sku"] == sku {
            return m;
        }
    }
    panic!("no change of {sku}");
}

fn sale(api: &Api, sku: &str, qty: i64) {
    let body = format!(
        r#"{{"sale_id":"{}","terminal_id":"{}","device_seq":1,"location":"store-1","occurred_at":"2026-01-02T10:00:00Z","lines":[{{"sku":"{sku}","qty":{qty},"unit_price":{{"amount":"9.99","currency":"EUR"}}}}],"payments":[{{"method":"card","amount":{{"amount":"9.99","currency":"EUR"}}}}]}}"#,
        unique("live-sale"),
        unique("live-t"),
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &body);
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn snapshot_then_one_push_per_change_with_seq_plus_one_for_several_skus() {
    let server = shared();
    let api = server.api();
    let a = api.new_sku("store-1", 5);
    let b = api.new_sku("store-1", 2);
    let url = ws_url(
        server,
        &format!("sku={a},{b}&location=store-1&key={PUBLISHABLE}"),
    );
    let mut ws = connect(&url, Some("https://shop.example")).expect("upgrade");
    let mut seq_a = None;
    let mut seq_b = None;
    for _ in 0..2 {
        let s = next(&mut ws).expect("snapshot");
        assert_eq!(s["type"], "snapshot", "{s}");
        assert_eq!(s["channel"], "online");
        let item = &s["items"][0];
        assert_eq!(item["location"], "store-1");
        if s["sku"] == a.as_str() {
            assert_eq!(item["available"], 5);
            seq_a = item["seq"].as_u64();
        } else {
            assert_eq!(s["sku"], b.as_str());
            assert_eq!(item["available"], 2);
            seq_b = item["seq"].as_u64();
        }
    }
    let (seq_a, seq_b) = (seq_a.expect("a's snapshot"), seq_b.expect("b's snapshot"));

    api.receive(&a, "store-1", 3);
    let c = change_of(&mut ws, &a);
    assert_eq!(c["available"], 8);
    assert_eq!(c["on_hand"], 8);
    assert_eq!(c["seq"].as_u64(), Some(seq_a + 1));

    sale(&api, &b, 1);
    let c = change_of(&mut ws, &b);
    assert_eq!(c["available"], 1);
    assert_eq!(c["seq"].as_u64(), Some(seq_b + 1));

    // A change elsewhere is not sent to a socket that asked for store-1.
    api.receive(&a, "store-2", 4);
    api.receive(&a, "store-1", 1);
    let c = change_of(&mut ws, &a);
    assert_eq!(c["location"], "store-1");
    assert_eq!(c["available"], 9);
    assert_eq!(c["seq"].as_u64(), Some(seq_a + 2));

    // A resync of one SKU answers its snapshot; ping is answered.
    send(&mut ws, &format!(r#"{{"type":"resync","sku":"{b}"}}"#));
    let s = next(&mut ws).expect("snapshot");
    assert_eq!(
        (s["type"].as_str(), s["sku"].as_str()),
        (Some("snapshot"), Some(b.as_str()))
    );
    assert_eq!(s["items"][0]["seq"].as_u64(), Some(seq_b + 1));
    send(&mut ws, "ping");
    assert_eq!(next(&mut ws).expect("pong"), Value::String("pong".into()));
    // Anything else closes the socket as a policy violation.
    send(&mut ws, r#"{"type":"subscribe","sku":"X"}"#);
    assert_eq!(next(&mut ws).unwrap_err().0, 1008);
}

#[test]
fn every_location_and_many_subscribers_of_one_sku() {
    let server = shared();
    let api = server.api();
    let a = api.new_sku("store-1", 1);
    let url = ws_url(server, &format!("sku={a}&key={PUBLISHABLE}"));
    let mut sockets: Vec<Ws> = (0..5).map(|_| connect(&url, None).expect("up")).collect();
    for ws in &mut sockets {
        let s = next(ws).expect("snapshot");
        assert_eq!(s["items"].as_array().map(|i| i.len()), Some(1), "{s}");
    }
    api.receive(&a, "warehouse-1", 6);
    for ws in &mut sockets {
        let c = change_of(ws, &a);
        assert_eq!(
            (c["location"].as_str(), c["available"].as_i64()),
            (Some("warehouse-1"), Some(6))
        );
    }
}

#[test]
fn refusals_before_the_upgrade_are_problems() {
    let server = shared();
    let api = server.api();
    let a = api.new_sku("store-1", 1);
    let q = |rest: &str| ws_url(server, &format!("sku={a}{rest}"));
    assert_eq!(connect(&q(""), None).unwrap_err().0, 401);
    assert_eq!(connect(&q("&key=pk_nope"), None).unwrap_err().0, 401);
    // A secret key never travels in a URL.
    let (status, body) = connect(&q(&format!("&key={ADMIN}")), None).unwrap_err();
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        connect(&q(&format!("&key={PUBLISHABLE}&location=nowhere")), None)
            .unwrap_err()
            .0,
        404
    );
    let unknown = ws_url(
        server,
        &format!("sku=NOPE-{}&key={PUBLISHABLE}", unique("x")),
    );
    assert_eq!(connect(&unknown, None).unwrap_err().0, 404);
    assert_eq!(
        connect(&q(&format!("&key={PUBLISHABLE}&channel=tv")), None)
            .unwrap_err()
            .0,
        400
    );
    // Not an upgrade.
    let plain = api.get(&format!("/v1/availability/live?sku={a}"), PUBLISHABLE);
    plain.assert_problem(426, "upgrade_required");
    // Too many SKUs on one socket: accepted, then closed 1008.
    let many: Vec<String> = (0..21).map(|i| format!("S{i}")).collect();
    let url = ws_url(server, &format!("sku={}&key={PUBLISHABLE}", many.join(",")));
    let mut ws = connect(&url, None).expect("upgrade");
    assert_eq!(next(&mut ws).unwrap_err().0, 1008);
}

#[test]
fn origins_and_the_subscriber_bound() {
    let server = Server::start_with_vars(&[
        ("LIVE_ORIGINS", "https://shop.example"),
        ("LIVE_MAX_SUBSCRIBERS", "2"),
    ]);
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 1);
    let url = ws_url(&server, &format!("sku={a}&key={PUBLISHABLE}"));
    let (status, body) = connect(&url, Some("https://evil.example")).unwrap_err();
    assert_eq!(status, 403, "{body}");
    let mut one = connect(&url, Some("https://shop.example")).expect("allowed origin");
    let mut two = connect(&url, None).expect("no origin: not a browser");
    next(&mut one).expect("snapshot");
    next(&mut two).expect("snapshot");
    let mut three = connect(&url, Some("https://shop.example")).expect("upgrade");
    assert_eq!(next(&mut three).unwrap_err().0, 1013);
    // A subscriber that leaves frees its place.
    one.close(None).expect("close");
    let _ = next(&mut one);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect(&url, None).expect("upgrade");
        match next(&mut again) {
            Ok(s) => {
                assert_eq!(s["type"], "snapshot");
                break;
            }
            Err((1013, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn sigkill_drops_sockets_and_a_reconnect_sees_every_acknowledged_change() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 10);
    let url = ws_url(
        &server,
        &format!("sku={a}&location=store-1&key={PUBLISHABLE}"),
    );
    let mut ws = connect(&url, None).expect("upgrade");
    let seq0 = next(&mut ws).expect("snapshot")["items"][0]["seq"]
        .as_u64()
        .expect("seq");
    for i in 1..=3 {
        sale(&api, &a, 1);
        let c = change_of(&mut ws, &a);
        assert_eq!(c["seq"].as_u64(), Some(seq0 + i));
    }
    server.kill9();
    assert!(next(&mut ws).is_err(), "the socket ends with the server");
    server.start_again();
    let api = server.api();
    let url = ws_url(
        &server,
        &format!("sku={a}&location=store-1&key={PUBLISHABLE}"),
    );
    let mut ws = connect(&url, None).expect("upgrade after restart");
    let s = next(&mut ws).expect("snapshot");
    assert_eq!(s["items"][0]["available"], 7);
    assert_eq!(s["items"][0]["seq"].as_u64(), Some(seq0 + 3));
    sale(&api, &a, 2);
    let c = change_of(&mut ws, &a);
    assert_eq!(
        (c["available"].as_i64(), c["seq"].as_u64()),
        (Some(5), Some(seq0 + 4))
    );
}

/// Multi-SKU sockets live in a hub (here the only one): bounded like a SKU
/// object, a SKU whose last watcher left is dropped by the hub and picked
/// up again by the next socket that watches it.
#[test]
fn several_sku_sockets_share_a_bounded_hub_that_follows_who_watches() {
    let server = Server::start_with_vars(&[("LIVE_HUBS", "1"), ("LIVE_MAX_SUBSCRIBERS", "2")]);
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let c = api.new_sku("store-1", 10);
    let open = |skus: &str| {
        let url = ws_url(
            &server,
            &format!("sku={skus}&location=store-1&key={PUBLISHABLE}"),
        );
        connect(&url, None).expect("upgrade")
    };
    let snapshots = |ws: &mut Ws, n: usize| {
        for _ in 0..n {
            assert_eq!(next(ws).expect("snapshot")["type"], "snapshot");
        }
    };
    let mut one = open(&format!("{a},{b}"));
    snapshots(&mut one, 2);
    let mut two = open(&format!("{b},{c}"));
    snapshots(&mut two, 2);
    // The hub's bound: a third socket is closed with 1013.
    let mut three = open(&format!("{a},{c}"));
    assert_eq!(next(&mut three).unwrap_err().0, 1013);

    // Both sockets that watch b get its change.
    sale(&api, &b, 1);
    assert_eq!(change_of(&mut one, &b)["available"], 9);
    assert_eq!(change_of(&mut two, &b)["available"], 9);

    // The only watcher of a leaves: a's next change finds no socket here
    // (the hub tells a's object to stop pushing), b and c still flow.
    one.close(None).expect("close");
    let _ = next(&mut one);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut four = loop {
        let mut ws = open(&format!("{c},{b}"));
        match next(&mut ws) {
            Ok(s) => {
                assert_eq!(s["type"], "snapshot");
                snapshots(&mut ws, 1);
                break ws;
            }
            Err((1013, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    sale(&api, &a, 2);
    sale(&api, &c, 3);
    assert_eq!(change_of(&mut two, &c)["available"], 7);
    assert_eq!(change_of(&mut four, &c)["available"], 7);
    // A socket that watches a again registers the hub with a's object anew.
    four.close(None).expect("close");
    let _ = next(&mut four);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut five = loop {
        let mut ws = open(&a);
        match next(&mut ws) {
            Ok(s) => {
                assert_eq!(s["items"][0]["available"], 8, "{s}");
                break ws;
            }
            Err((1013, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    let mut six = loop {
        let mut ws = open(&format!("{a},{c}"));
        match next(&mut ws) {
            Ok(_) => {
                snapshots(&mut ws, 1);
                break ws;
            }
            Err((1013, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    sale(&api, &a, 1);
    assert_eq!(change_of(&mut six, &a)["available"], 7);
    assert_eq!(change_of(&mut five, &a)["available"], 7);
}
