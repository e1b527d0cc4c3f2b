//! `LiveHub`: the Durable Object that holds the sockets watching several
//! SKUs at once (`GET /v1/availability/live?sku=A,B`), with the hibernation
//! API, so an idle page costs nothing however many SKUs it watches.
//!
//! A socket belongs to one object, and a SKU's changes are decided in its
//! own object, so a multi-SKU socket lives in a hub: one of `LIVE_HUBS`
//! shards (named `hub-<n>`, the Worker picks one at random per socket). On
//! accept the hub registers itself with each SKU object of the socket
//! (`SkuRequest::LiveHub`, which answers that SKU's positions) and sends one
//! snapshot per SKU; from then on each SKU object sends the hub the
//! positions its writes change (`HubRequest::Push`, after the SQLite commit,
//! before the write's answer), and the hub sends each of its sockets that
//! watches that SKU one `change` frame per location it asked for. The frames
//! are the SKU objects' own protocol (`objects/live.rs`). A hub that no
//! longer has a socket of a SKU answers `keep: false` and that SKU object
//! forgets it, so a SKU object pushes to at most `LIVE_HUBS` hubs and only
//! while someone watches.
//!
//! A socket's subscription (hub name, SKUs, channel, locations) is its
//! attachment: nothing lives only in memory, so eviction loses nothing.
//! Client messages: `ping` (answered `pong`), `{"type":"resync"}` or
//! `{"type":"resync","sku":S}` (fresh snapshots); anything else closes
//! with 1008. Over `max` sockets in this hub: accepted and closed 1013.
use futures_util::future::join_all;
use omnistock_core::{Channel, LocationId, Sku};
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::live::{self, HubRequest, PushAnswer, CLOSE_POLICY, CLOSE_TRY_AGAIN};
use crate::http::Problem;
use crate::wire::sku_stock::{ReadAnswer, SkuRequest};
use crate::wire::{self, Namespace};

/// The hibernation tag of every hub socket.
const TAG: &str = "hub";
/// SKUs one socket may watch (the Worker checks the same bound first).
pub const MAX_SKUS: usize = 20;

/// What one socket watches; kept as its attachment.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct HubSub {
    hub: String,
    skus: Vec<Sku>,
    channel: Channel,
    locations: Option<Vec<LocationId>>,
}

impl HubSub {
    fn wants(&self, l: &LocationId) -> bool {
        self.locations.as_ref().is_none_or(|ls| ls.contains(l))
    }
}

/// The upgrade request the Worker sends a hub.
pub fn upgrade_url(
    hub: &str,
    skus: &[Sku],
    channel: Channel,
    locations: &[LocationId],
    max: usize,
) -> String {
    let skus: Vec<&str> = skus.iter().map(|s| s.as_str()).collect();
    let locs: Vec<&str> = locations.iter().map(|l| l.as_str()).collect();
    format!(
        "https://do/hub?hub={hub}&sku={}&channel={}&location={}&max={max}",
        skus.join(","),
        if channel == Channel::Pos {
            "pos"
        } else {
            "online"
        },
        locs.join(",")
    )
}

/// Parses the Worker's upgrade URL (the Worker validated every value).
fn parse(req: &Request) -> Result<(HubSub, usize), Problem> {
    let one = live::query_reader(req)?;
    let hub = one("hub");
    if hub.is_empty() || hub.len() > 64 {
        return Err(Problem::invalid("hub is required"));
    }
    let mut skus: Vec<Sku> = Vec::new();
    for s in one("sku").split(',').filter(|s| !s.is_empty()) {
        let s = Sku::parse(s).map_err(|e| Problem::invalid(format!("sku: {e}")))?;
        if !skus.contains(&s) {
            skus.push(s);
        }
    }
    if skus.is_empty() || skus.len() > MAX_SKUS {
        return Err(Problem::invalid("1 to 20 SKUs"));
    }
    let p = live::upgrade_params(&one)?;
    Ok((
        HubSub {
            hub,
            skus,
            channel: p.channel,
            locations: p.locations,
        },
        p.max,
    ))
}

#[durable_object]
pub struct LiveHub {
    state: State,
    env: Env,
}

impl DurableObject for LiveHub {
    fn new(state: State, env: Env) -> Self {
        LiveHub { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if live::is_upgrade(&req) {
            return self.accept(&req).await;
        }
        wire::serve(self, req).await
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(m) = live::client_message(&ws, message)? else {
            return Ok(());
        };
        let Some(sub) = ws.deserialize_attachment::<HubSub>()? else {
            return ws.close(Some(CLOSE_POLICY), Some("not a subscriber"));
        };
        let skus: Vec<Sku> = match &m.sku {
            None => sub.skus.clone(),
            Some(s) => match sub.skus.iter().find(|x| x.as_str() == s) {
                Some(x) => vec![x.clone()],
                None => return ws.close(Some(CLOSE_POLICY), Some("not a SKU of this socket")),
            },
        };
        self.snapshots(&ws, &sub, &skus).await
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        live::on_close(&ws, code);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        live::on_close(&ws, 1011);
        Ok(())
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for LiveHub {
    async fn receive(&self, msg: &str) -> String {
        let r = wire::decode::<HubRequest>(msg).map(
            |HubRequest::Push {
                 sku,
                 now,
                 positions,
             }| self.push(&sku, now, &positions),
        );
        wire::reply(r)
    }
}

crate::rpc_receiver!(LiveHub);

impl LiveHub {
    async fn accept(&self, req: &Request) -> worker::Result<Response> {
        let (sub, max) = match parse(req) {
            Ok(x) => x,
            Err(p) => return Response::error(p.detail, 400),
        };
        let pair = WebSocketPair::new()?;
        let server = pair.server;
        if self.state.get_websockets_with_tag(TAG).len() >= max {
            server.accept()?;
            server.close(Some(CLOSE_TRY_AGAIN), Some("too many live sockets here"))?;
            return Response::from_websocket(pair.client);
        }
        self.state.accept_websocket_with_tags(&server, &[TAG]);
        server.serialize_attachment(&sub)?;
        self.snapshots(&server, &sub, &sub.skus).await?;
        Response::from_websocket(pair.client)
    }

    /// Registers this hub with the SKU objects of `skus` (in parallel) and
    /// sends `ws` one snapshot per SKU; a SKU object that cannot answer
    /// closes the socket with 1013 (the client reconnects and resyncs).
    async fn snapshots(&self, ws: &WebSocket, sub: &HubSub, skus: &[Sku]) -> worker::Result<()> {
        let calls = skus.iter().map(|sku| {
            let req = SkuRequest::LiveHub {
                hub: sub.hub.clone(),
                sku: sku.clone(),
            };
            async move {
                let r: Result<ReadAnswer, Problem> =
                    wire::call(&self.env, Namespace::SkuStock, sku.as_str(), &req).await;
                (sku, r)
            }
        });
        for (sku, r) in join_all(calls).await {
            match r {
                Ok(a) => ws.send_with_str(live::snapshot_frame(
                    sku.as_str(),
                    sub.channel,
                    sub.locations.as_deref(),
                    a.now,
                    &a.positions,
                ))?,
                Err(_) => {
                    return ws.close(Some(CLOSE_TRY_AGAIN), Some("a SKU could not be read"));
                }
            }
        }
        Ok(())
    }

    /// A SKU object's committed change: one frame per location and channel,
    /// sent to every socket that watches it there. `keep: false` when none
    /// of this hub's sockets watches the SKU any more.
    fn push(
        &self,
        sku: &str,
        _now: i64,
        positions: &[(LocationId, omnistock_core::Position)],
    ) -> PushAnswer {
        let mut keep = false;
        let mut frames: Vec<(usize, Channel, String)> = Vec::new();
        for ws in self.state.get_websockets_with_tag(TAG) {
            let Ok(Some(sub)) = ws.deserialize_attachment::<HubSub>() else {
                continue;
            };
            if !sub.skus.iter().any(|s| s.as_str() == sku) {
                continue;
            }
            keep = true;
            for (i, (l, p)) in positions.iter().enumerate() {
                if !sub.wants(l) {
                    continue;
                }
                let at = match frames
                    .iter()
                    .position(|(j, c, _)| *j == i && *c == sub.channel)
                {
                    Some(at) => at,
                    None => {
                        let mut m = live::row(sku, l, p, sub.channel);
                        m["type"] = json!("change");
                        frames.push((i, sub.channel, m.to_string()));
                        frames.len() - 1
                    }
                };
                if let Some((_, _, text)) = frames.get(at) {
                    let _ = ws.send_with_str(text);
                }
            }
        }
        PushAnswer { keep }
    }
}
