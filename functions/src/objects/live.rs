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

/// What every upgrade URL the Worker sends an object says (a SKU object's
/// or a hub's): the channel, the locations (`None`: every one) and the
/// subscriber bound; `one(name)` reads a query parameter ("" when absent).
pub struct UpgradeParams {
    pub channel: Channel,
    pub locations: Option<Vec<LocationId>>,
    pub max: usize,
}

/// Parses [`UpgradeParams`]. The Worker validated every value; a failure
/// here is an internal error.
pub fn upgrade_params(one: &dyn Fn(&str) -> String) -> Result<UpgradeParams, Problem> {
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
    Ok(UpgradeParams {
        channel,
        locations: (!locations.is_empty()).then_some(locations),
        max,
    })
}

/// A query parameter reader over an upgrade request's URL.
pub fn query_reader(req: &Request) -> Result<impl Fn(&str) -> String, Problem> {
    let url = req.url().map_err(|_| Problem::invalid("bad URL"))?;
    let pairs = crate::http::query_pairs(&url);
    Ok(move |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    })
}

/// Parses the Worker's upgrade URL for a SKU object.
fn parse(req: &Request) -> Result<(Sub, usize), Problem> {
    let one = query_reader(req)?;
    let sku = one("sku");
    if sku.is_empty() {
        return Err(Problem::invalid("sku is required"));
    }
    let p = upgrade_params(&one)?;
    let sub = Sub {
        sku,
        channel: p.channel,
        locations: p.locations,
        full: one("full") == "1",
    };
    Ok((sub, p.max))
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
    crate::http::clip(s, 120)
}

/// A client's `resync`: `sku` names one of the socket's SKUs (none: all).
pub struct Resync {
    pub sku: Option<String>,
}

/// Reads a client's frame: `ping` is answered here, anything but a
/// `{"type":"resync"}` closes the socket (1008); `Ok(Some)` is a resync to
/// answer. The same protocol for a SKU object's sockets and a hub's.
pub fn client_message(
    ws: &WebSocket,
    msg: WebSocketIncomingMessage,
) -> worker::Result<Option<Resync>> {
    let text = match msg {
        WebSocketIncomingMessage::String(s) if s.len() <= MAX_CLIENT_MESSAGE => s,
        _ => {
            ws.close(Some(CLOSE_POLICY), Some("text frames of the protocol only"))?;
            return Ok(None);
        }
    };
    if text == "ping" {
        ws.send_with_str("pong")?;
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct ClientMessage {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        sku: Option<String>,
    }
    match serde_json::from_str::<ClientMessage>(&text) {
        Ok(m) if m.kind == "resync" => Ok(Some(Resync { sku: m.sku })),
        Ok(_) => {
            ws.close(Some(CLOSE_POLICY), Some("unknown message type"))?;
            Ok(None)
        }
        Err(_) => {
            ws.close(Some(CLOSE_POLICY), Some("not a message of the protocol"))?;
            Ok(None)
        }
    }
}

/// A message from a subscriber of this SKU object.
pub fn on_message(
    ws: &WebSocket,
    msg: WebSocketIncomingMessage,
    read: &dyn Fn(Option<Vec<LocationId>>) -> Result<Positions, Problem>,
) -> worker::Result<()> {
    if client_message(ws, msg)?.is_none() {
        return Ok(());
    }
    let Some(sub) = ws.deserialize_attachment::<Sub>()? else {
        return ws.close(Some(CLOSE_POLICY), Some("not a subscriber"));
    };
    match snapshot(&sub, read) {
        Ok(s) => ws.send_with_str(s),
        Err(p) => ws.close(Some(CLOSE_TRY_AGAIN), Some(short(&p.detail))),
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

/// The snapshot frame of one SKU for a subscription (`channel`, `locations`:
/// `None` every location), from positions read at `now`.
pub fn snapshot_frame(
    sku: &str,
    channel: Channel,
    locations: Option<&[LocationId]>,
    now: i64,
    positions: &[(LocationId, Position)],
) -> String {
    let items: Vec<Value> = positions
        .iter()
        .filter(|(l, _)| locations.is_none_or(|ls| ls.contains(l)))
        .map(|(l, p)| row(sku, l, p, channel))
        .collect();
    json!({
        "type": "snapshot",
        "sku": sku,
        "channel": channel_name(channel),
        "as_of": rfc3339(now),
        "items": items,
    })
    .to_string()
}

/// Hubs one SKU object pushes to, at most (a hub is one of `LIVE_HUBS`
/// shards, so this is never reached with the default configuration).
pub const MAX_HUBS_PER_SKU: usize = 64;

const HUBS_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS live_hubs (hub TEXT PRIMARY KEY, sku TEXT NOT NULL)";

#[derive(Deserialize)]
struct HubRow {
    hub: String,
    sku: String,
}

/// A SKU object's side of the live hubs: which hubs relay its changes to
/// multi-SKU sockets (SQLite `live_hubs`, read once per instance), and the
/// positions changed by the request in progress, sent to them before its
/// answer ([`Hubs::flush`]). No hub registered: nothing is kept or sent.
#[derive(Default)]
pub struct Hubs {
    /// `(hub, sku, generation)`; `None` until read. The generation is bumped
    /// by each registration, so a `keep: false` answered before a hub's new
    /// socket registered does not drop that hub.
    names: std::cell::RefCell<Option<Vec<(String, String, u64)>>>,
    generation: std::cell::Cell<u64>,
    /// Positions changed since the last flush (one per location, latest).
    pending: std::cell::RefCell<Vec<(LocationId, Position)>>,
    now: std::cell::Cell<i64>,
}

impl Hubs {
    fn load(&self, sql: &worker::SqlStorage) -> Result<(), Problem> {
        if self.names.borrow().is_some() {
            return Ok(());
        }
        crate::objects::storage::exec(sql, HUBS_SCHEMA, vec![])?;
        let rows: Vec<HubRow> = crate::objects::storage::query(
            sql,
            "SELECT hub, sku FROM live_hubs ORDER BY hub",
            vec![],
        )?;
        *self.names.borrow_mut() = Some(rows.into_iter().map(|r| (r.hub, r.sku, 0)).collect());
        Ok(())
    }

    /// Registers `hub` (idempotent; refused over [`MAX_HUBS_PER_SKU`]).
    pub fn register(&self, storage: &worker::Storage, hub: &str, sku: &str) -> Result<(), Problem> {
        use crate::objects::storage::{exec, text};
        let sql = storage.sql();
        self.load(&sql)?;
        let mut names = self.names.borrow_mut();
        let names = names.get_or_insert_with(Vec::new);
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        if let Some(known) = names.iter_mut().find(|(h, _, _)| h == hub) {
            known.2 = generation;
            return Ok(());
        }
        if names.len() >= MAX_HUBS_PER_SKU {
            return Err(Problem::overloaded("too many live hubs for this SKU"));
        }
        exec(
            &sql,
            "INSERT OR REPLACE INTO live_hubs (hub, sku) VALUES (?, ?)",
            vec![text(hub), text(sku)],
        )?;
        names.push((hub.to_string(), sku.to_string(), generation));
        Ok(())
    }

    /// After a committed write: keeps the touched positions for the hubs.
    pub fn note(
        &self,
        sql: &worker::SqlStorage,
        now: i64,
        st_at: impl Fn(&LocationId) -> Position,
        touched: &[LocationId],
    ) {
        if touched.is_empty() || self.load(sql).is_err() {
            return;
        }
        if self.names.borrow().as_ref().is_none_or(Vec::is_empty) {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        for l in touched {
            let p = st_at(l);
            match pending.iter_mut().find(|(x, _)| x == l) {
                Some(slot) => slot.1 = p,
                None => pending.push((l.clone(), p)),
            }
        }
        self.now.set(now);
    }

    /// Sends the kept positions to every hub, in parallel, and forgets the
    /// hubs that no longer have a subscriber of this SKU. Failures are
    /// logged: the clients' seq shows them the gap and they resync.
    pub async fn flush(&self, storage: &worker::Storage, env: &worker::Env) {
        let positions = std::mem::take(&mut *self.pending.borrow_mut());
        if positions.is_empty() {
            return;
        }
        let names: Vec<(String, String, u64)> = self.names.borrow().clone().unwrap_or_default();
        let now = self.now.get();
        let calls = names.iter().map(|(hub, sku, generation)| {
            let req = HubRequest::Push {
                sku: sku.clone(),
                now,
                positions: positions.clone(),
            };
            async move {
                let r: Result<PushAnswer, Problem> =
                    crate::wire::call(env, crate::wire::Namespace::LiveHub, hub, &req).await;
                (hub.clone(), *generation, r)
            }
        });
        let results = futures_util::future::join_all(calls).await;
        for (hub, generation, r) in results {
            match r {
                Ok(PushAnswer { keep: true }) => {}
                Ok(PushAnswer { keep: false }) => {
                    let registered_since =
                        self.names.borrow().as_ref().is_some_and(|n| {
                            n.iter().any(|(h, _, g)| *h == hub && *g != generation)
                        });
                    if registered_since {
                        continue;
                    }
                    let sql = storage.sql();
                    let _ = crate::objects::storage::exec(
                        &sql,
                        "DELETE FROM live_hubs WHERE hub = ?",
                        vec![crate::objects::storage::text(&hub)],
                    );
                    if let Some(n) = self.names.borrow_mut().as_mut() {
                        n.retain(|(h, _, _)| *h != hub);
                    }
                }
                Err(p) => worker::console_error!("live hub {hub}: {}", p.detail),
            }
        }
    }
}

/// A message from a SKU object to a live hub.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HubRequest {
    /// These positions of `sku` changed (committed at `now`).
    Push {
        sku: String,
        now: i64,
        positions: Vec<(LocationId, Position)>,
    },
}

/// A hub's answer to a push: `keep: false` when no socket of it watches the SKU.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PushAnswer {
    pub keep: bool,
}
