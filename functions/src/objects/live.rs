//! Live availability: the subscribers of one `SkuStock` object.
//!
//! A subscriber is a WebSocket accepted with the hibernation API
//! (`state.accept_websocket_with_tags`, tag [`TAG`]): an idle socket costs the
//! object nothing and survives the object's eviction from memory. What it
//! asked for (SKU, channel, locations) is its attachment, so a push needs no
//! memory that an eviction could lose.
//!
//! Protocol (text frames, JSON):
//! - on accept, and on a `{"type":"resync"}` from the client: one
//!   `{"type":"snapshot", sku, channel, as_of, items: [row..]}`;
//! - after every committed write that touched a subscribed location: one
//!   `{"type":"change", ..row}` per location, where a row is `{sku, location,
//!   available, seq, on_hand, reserved, committed, safety_stock, incoming,
//!   channel}` and `seq` is the position's version (per SKU and location,
//!   +1 per change), so a client sees a gap and asks for a snapshot;
//! - `ping` is answered `pong` (by the runtime: an auto-response that does
//!   not wake the object, sent after every change sent before it);
//! - a subscription with `full=1` (the Worker's edge cache) also gets the
//!   whole core `position` in every row.
//!
//! Bounds: at most `max` subscribers per SKU object (the Worker passes
//! `LIVE_MAX_SUBSCRIBERS`); one over is accepted and closed at once with
//! [`CLOSE_TRY_AGAIN`] (1013). Anything else the client sends that is not the
//! protocol is closed with [`CLOSE_POLICY`] (1008).
use omnistock_core::{Channel, LocationId, Position};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{Request, Response, State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use crate::http::{rfc3339, Problem};

/// The hibernation tag of every live subscriber.
pub const TAG: &str = "live";
/// Close code: the client broke the protocol or a bound of its own.
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: the server is at a bound; try again later.
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Subscribers per SKU object when the Worker does not say.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1_000;
/// The most subscribers any configuration allows per SKU object.
pub const MAX_SUBSCRIBERS: usize = 10_000;
/// Locations one subscription may name (none: every location).
pub const MAX_LOCATIONS: usize = 100;
/// A client message longer than this is a protocol error.
pub const MAX_CLIENT_MESSAGE: usize = 256;

/// What one socket asked for; kept as the socket's attachment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sub {
    pub sku: String,
    pub channel: Channel,
    /// `None`: every location the SKU has a position at.
    pub locations: Option<Vec<LocationId>>,
    /// The Worker's edge cache (issue 13): every row also carries the whole
    /// `position` (`full=1` in the upgrade URL).
    #[serde(default)]
    pub full: bool,
}

impl Sub {
    fn wants(&self, l: &LocationId) -> bool {
        self.locations.as_ref().is_none_or(|ls| ls.contains(l))
    }
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Pos => "pos",
        _ => "online",
    }
}

/// The upgrade request the Worker sends a SKU object.
pub fn upgrade_url(sku: &str, channel: Channel, locations: &[LocationId], max: usize) -> String {
    let locs: Vec<&str> = locations.iter().map(|l| l.as_str()).collect();
    format!(
        "https://do/live?sku={}&channel={}&location={}&max={max}",
        sku,
        channel_name(channel),
        locs.join(",")
    )
}

/// Whether `req` is a live subscription (a WebSocket upgrade).
pub fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get("Upgrade")
        .ok()
        .flatten()
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Parses the Worker's upgrade URL. The Worker validated every value; a
/// failure here is an internal error.
fn parse(req: &Request) -> Result<(Sub, usize), Problem> {
    let url = req.url().map_err(|_| Problem::invalid("bad URL"))?;
    let pairs = crate::http::query_pairs(&url);
    let one = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let sku = one("sku");
    if sku.is_empty() {
        return Err(Problem::invalid("sku is required"));
    }
    let channel = match one("channel").as_str() {
        "pos" => Channel::Pos,
        _ => Channel::Online,
    };
    let mut locations = Vec::new();
    for l in one("location").split(',').filter(|l| !l.is_empty()) {
        let l = LocationId::parse(l).map_err(|e| Problem::invalid(format!("location: {e}")))?;
        if !locations.contains(&l) {
            locations.push(l);
        }
    }
    if locations.len() > MAX_LOCATIONS {
        return Err(Problem::invalid("too many locations"));
    }
    let max = one("max")
        .parse::<usize>()
        .unwrap_or(DEFAULT_MAX_SUBSCRIBERS)
        .clamp(1, MAX_SUBSCRIBERS);
    let sub = Sub {
        sku,
        channel,
        locations: (!locations.is_empty()).then_some(locations),
        full: one("full") == "1",
    };
    Ok((sub, max))
}

/// One row of the protocol.
pub fn row(sku: &str, l: &LocationId, p: &Position, channel: Channel) -> Value {
    json!({
        "sku": sku,
        "location": l,
        "available": p.available(channel),
        "seq": p.version,
        "on_hand": p.on_hand,
        "reserved": p.reserved,
        "committed": p.committed,
        "safety_stock": p.safety_stock,
        "incoming": p.incoming,
        "channel": channel_name(channel),
    })
}

/// One row for this subscriber (with the whole position if it asked).
fn sub_row(sub: &Sub, l: &LocationId, p: &Position) -> Value {
    let mut r = row(&sub.sku, l, p, sub.channel);
    if sub.full {
        r["position"] = json!(p);
    }
    r
}

/// Positions for a snapshot: `(now_ms, [(location, position)])`.
pub type Positions = (i64, Vec<(LocationId, Position)>);

fn snapshot(
    sub: &Sub,
    read: &dyn Fn(Option<Vec<LocationId>>) -> Result<Positions, Problem>,
) -> Result<String, Problem> {
    let (now, positions) = read(sub.locations.clone())?;
    let items: Vec<Value> = positions.iter().map(|(l, p)| sub_row(sub, l, p)).collect();
    Ok(json!({
        "type": "snapshot",
        "sku": sub.sku,
        "channel": channel_name(sub.channel),
        "as_of": rfc3339(now),
        "items": items,
    })
    .to_string())
}

/// Accepts a subscription: the socket is hibernatable, its first message is
/// the snapshot. Over the subscriber bound it is closed with 1013.
pub fn accept(
    state: &State,
    req: &Request,
    read: &dyn Fn(Option<Vec<LocationId>>) -> Result<Positions, Problem>,
) -> worker::Result<Response> {
    let (sub, max) = match parse(req) {
        Ok(x) => x,
        Err(p) => return Response::error(p.detail, 400),
    };
    let pair = WebSocketPair::new()?;
    let server = pair.server;
    if state.get_websockets_with_tag(TAG).len() >= max {
        server.accept()?;
        server.close(
            Some(CLOSE_TRY_AGAIN),
            Some("too many subscribers to this SKU"),
        )?;
        return Response::from_websocket(pair.client);
    }
    state.accept_websocket_with_tags(&server, &[TAG]);
    // `ping` is answered `pong` by the runtime without waking the object (in
    // order after every change sent before: the edge cache's liveness check).
    if let Ok(pair) = worker::worker_sys::WebSocketRequestResponsePair::new("ping", "pong") {
        state.set_websocket_auto_response(&pair);
    }
    server.serialize_attachment(&sub)?;
    match snapshot(&sub, read) {
        Ok(s) => server.send_with_str(s)?,
        Err(p) => server.close(Some(CLOSE_TRY_AGAIN), Some(short(&p.detail)))?,
    }
    Response::from_websocket(pair.client)
}

/// A close reason fits in 123 bytes.
fn short(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A message from a subscriber (relayed by the Worker).
pub fn on_message(
    ws: &WebSocket,
    msg: WebSocketIncomingMessage,
    read: &dyn Fn(Option<Vec<LocationId>>) -> Result<Positions, Problem>,
) -> worker::Result<()> {
    let text = match msg {
        WebSocketIncomingMessage::String(s) if s.len() <= MAX_CLIENT_MESSAGE => s,
        _ => return ws.close(Some(CLOSE_POLICY), Some("text frames of the protocol only")),
    };
    if text == "ping" {
        return ws.send_with_str("pong");
    }
    #[derive(Deserialize)]
    struct ClientMessage {
        #[serde(rename = "type")]
        kind: String,
    }
    let Ok(ClientMessage { kind }) = serde_json::from_str::<ClientMessage>(&text) else {
        return ws.close(Some(CLOSE_POLICY), Some("not a message of the protocol"));
    };
    let Some(sub) = ws.deserialize_attachment::<Sub>()? else {
        return ws.close(Some(CLOSE_POLICY), Some("not a subscriber"));
    };
    match kind.as_str() {
        "resync" => match snapshot(&sub, read) {
            Ok(s) => ws.send_with_str(s),
            Err(p) => ws.close(Some(CLOSE_TRY_AGAIN), Some(short(&p.detail))),
        },
        _ => ws.close(Some(CLOSE_POLICY), Some("unknown message type")),
    }
}

/// The client went away: close our side too (a no-op if already closed).
pub fn on_close(ws: &WebSocket, code: usize) {
    let code = match code {
        1000 | 3000..=4999 => code as u16,
        _ => 1000,
    };
    let _ = ws.close(Some(code), Some("closed"));
}

/// After a committed write: one `change` per touched location to every
/// subscriber of it. A socket that cannot take it is closing; it is skipped.
pub fn push(state: &State, st_at: impl Fn(&LocationId) -> Position, touched: &[LocationId]) {
    if touched.is_empty() {
        return;
    }
    let sockets = state.get_websockets_with_tag(TAG);
    if sockets.is_empty() {
        return;
    }
    // One position read per touched location, and one frame per location and
    // channel, whoever subscribes (a SKU object has one SKU: its subscribers' `sku`).
    let positions: Vec<(&LocationId, Position)> = touched.iter().map(|l| (l, st_at(l))).collect();
    let mut frames: Vec<(usize, Channel, bool, String)> = Vec::new();
    for ws in sockets {
        let Ok(Some(sub)) = ws.deserialize_attachment::<Sub>() else {
            continue;
        };
        for (i, (l, p)) in positions.iter().enumerate() {
            if !sub.wants(l) {
                continue;
            }
            let known = frames
                .iter()
                .position(|(j, c, f, _)| *j == i && *c == sub.channel && *f == sub.full);
            let at = match known {
                Some(at) => at,
                None => {
                    let mut m = sub_row(&sub, l, p);
                    m["type"] = json!("change");
                    frames.push((i, sub.channel, sub.full, m.to_string()));
                    frames.len() - 1
                }
            };
            if let Some((_, _, _, text)) = frames.get(at) {
                let _ = ws.send_with_str(text);
            }
        }
    }
}
