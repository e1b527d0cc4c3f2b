//! `GET /v1/availability/live?sku=A,B&location=L1,L2&channel=online|pos&key=pk_..`:
//! live availability over one WebSocket, for several SKUs.
//!
//! Design (measured in docs/benchmarks.md, "Live availability"): the SKU
//! objects hold the subscriptions with the hibernation API
//! (`objects/live.rs`: snapshot, push after each committed write). For one
//! SKU the Worker hands the client the SKU object's own socket (no relay). A
//! Durable Object socket belongs to one object, so a page that watches
//! several SKUs gets ONE socket held by a `LiveHub` object (one of
//! `LIVE_HUBS` shards, picked at random), which the SKU objects push their
//! changes to (`objects/live_hub.rs`). No socket is relayed by the Worker:
//! every live socket is a Durable Object's, hibernatable, and an idle one
//! costs nothing.
//!
//! Authentication: `Authorization: Bearer <key>` (any role that reads
//! availability) or, since browsers cannot set headers on a WebSocket,
//! `key=<publishable key>` in the query (a secret key in a URL is refused).
//! Origins: a request with an `Origin` header must be in `LIVE_ORIGINS`
//! (comma-separated; `*` any, the wrangler.toml default for dev).
//! Bounds: [`MAX_LIVE_SKUS`] SKUs and [`MAX_LIVE_LOCATIONS`] locations per
//! socket (over: accepted then closed 1008), `LIVE_MAX_SUBSCRIBERS` per SKU
//! object (over: closed 1013). Bad input before the upgrade is a
//! problem+json 4xx; a request without `Upgrade: websocket` is 426.
use omnistock_core::{Channel, LocationId, Sku};
use worker::{Env, Headers, Method, Request, RequestInit, Response, WebSocketPair};

use super::facts;
use crate::auth::{self, Principal, Role};
use crate::cache;
use crate::http::{query_list, query_pairs, Problem, Reply};
use crate::objects::live::{self as sub, CLOSE_POLICY, DEFAULT_MAX_SUBSCRIBERS, MAX_SUBSCRIBERS};
use crate::objects::storage::now_ms;
use crate::wire::Namespace;

/// The path of the live endpoint.
pub const PATH: &str = "/v1/availability/live";
/// SKUs one socket may watch.
pub const MAX_LIVE_SKUS: usize = 20;
/// Locations one socket may name (none: every location).
pub const MAX_LIVE_LOCATIONS: usize = 20;

/// The endpoint: checks, then the upgrade and the relay. Never fails.
pub async fn get(req: Request, env: Env) -> Response {
    match prepare(&req, &env).await {
        Ok(Ok(plan)) => match open(&env, plan).await {
            Ok(r) => r,
            Err(p) => Reply::problem(&p).into_response(),
        },
        Ok(Err((code, reason))) => refuse_after_upgrade(code, &reason)
            .unwrap_or_else(|p| Reply::problem(&p).into_response()),
        Err(p) => Reply::problem(&p).into_response(),
    }
}

struct Plan {
    skus: Vec<Sku>,
    locations: Vec<LocationId>,
    channel: Channel,
    max: usize,
}

/// `Err`: a problem before the upgrade; `Ok(Err)`: a close code after it.
async fn prepare(req: &Request, env: &Env) -> Result<Result<Plan, (u16, String)>, Problem> {
    // The worker crate reads a method it does not know (QUERY...) as GET.
    if req.method() != Method::Get || !req.inner().method().eq_ignore_ascii_case("GET") {
        return Err(Problem::new(405, "invalid_request", "use GET").with("allow", "GET"));
    }
    let url = req.url().map_err(|_| Problem::invalid("bad URL"))?;
    let query = query_pairs(&url);
    let principal = principal(req, env, &query)?;
    check_origin(req, env)?;
    let raw_skus = query_list(&query, "sku");
    if raw_skus.is_empty() {
        return Err(Problem::invalid("sku is required (comma-separated)"));
    }
    let raw_locs = query_list(&query, "location");
    let mut skus: Vec<Sku> = Vec::new();
    for s in &raw_skus {
        let sku = Sku::parse(s).map_err(|e| Problem::invalid(format!("sku {s:?}: {e}")))?;
        if !skus.contains(&sku) {
            skus.push(sku);
        }
    }
    let mut locations: Vec<LocationId> = Vec::new();
    for l in &raw_locs {
        let loc =
            LocationId::parse(l).map_err(|e| Problem::invalid(format!("location {l:?}: {e}")))?;
        if !locations.contains(&loc) {
            locations.push(loc);
        }
    }
    let channel = match query_list(&query, "channel").as_slice() {
        [] => principal.channel(),
        [c] if c == "online" => Channel::Online,
        [c] if c == "pos" => Channel::Pos,
        _ => return Err(Problem::invalid("channel must be online or pos")),
    };
    // The request is well formed: only now does its transport matter (a
    // bad parameter is a 400 whether or not it asked to upgrade).
    if !sub::is_upgrade(req) {
        return Err(Problem::new(
            426,
            "upgrade_required",
            "this endpoint is a WebSocket: send Upgrade: websocket",
        ));
    }
    if raw_skus.len() > MAX_LIVE_SKUS {
        return Ok(Err((
            CLOSE_POLICY,
            format!("at most {MAX_LIVE_SKUS} SKUs per socket"),
        )));
    }
    if raw_locs.len() > MAX_LIVE_LOCATIONS {
        return Ok(Err((
            CLOSE_POLICY,
            format!("at most {MAX_LIVE_LOCATIONS} locations per socket"),
        )));
    }
    let facts = facts(env, now_ms(), &skus, &[], &locations).await?;
    facts.require_skus(&skus, false)?;
    facts.require_locations(&locations)?;
    let max = env
        .var("LIVE_MAX_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MAX_SUBSCRIBERS)
        .clamp(1, MAX_SUBSCRIBERS);
    Ok(Ok(Plan {
        skus,
        locations,
        channel,
        max,
    }))
}

/// The header's key (any reader of availability), else `key=` (publishable only).
fn principal(req: &Request, env: &Env, query: &[(String, String)]) -> Result<Principal, Problem> {
    let header = req.headers().get("Authorization").ok().flatten();
    let from_query = query_list(query, "key");
    let p = match (header, from_query.as_slice()) {
        (Some(_), _) | (None, []) => crate::extract::principal(req, env)?,
        (None, [k]) => {
            let keys = cache::keys(|| {
                env.secret("API_KEYS")
                    .map(|s| s.to_string())
                    .or_else(|_| env.var("API_KEYS").map(|v| v.to_string()))
                    .unwrap_or_default()
            });
            let p = auth::authenticate(Some(&format!("Bearer {k}")), &keys)?;
            if p.role != Role::Publishable {
                return Err(Problem::forbidden(
                    "only a publishable key may be sent as key=; send others in Authorization",
                ));
            }
            p
        }
        (None, _) => return Err(Problem::invalid("one key= at most")),
    };
    if !matches!(
        p.role,
        Role::Admin | Role::Storefront | Role::Pos | Role::Publishable
    ) {
        return Err(Problem::forbidden("this key may not read availability"));
    }
    Ok(p)
}

/// Whether `origin` is allowed by `LIVE_ORIGINS` (comma-separated, `*` any).
pub fn origin_allowed(allowed: &str, origin: &str) -> bool {
    allowed
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

fn check_origin(req: &Request, env: &Env) -> Result<(), Problem> {
    let Some(origin) = req.headers().get("Origin").ok().flatten() else {
        return Ok(()); // not a browser: the key decides
    };
    let allowed = env
        .var("LIVE_ORIGINS")
        .map(|v| v.to_string())
        .unwrap_or_default();
    if origin_allowed(&allowed, &origin) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "origin {origin} may not open live availability (LIVE_ORIGINS)"
        )))
    }
}

/// Accepts the client's socket and closes it at once with `code`.
fn refuse_after_upgrade(code: u16, reason: &str) -> Result<Response, Problem> {
    let pair = WebSocketPair::new()?;
    pair.server.accept()?;
    pair.server.close(Some(code), Some(reason))?;
    Ok(Response::from_websocket(pair.client)?)
}

/// The SKU object's answer to an upgrade for `sku` (a 101 with its socket).
async fn upgrade(env: &Env, sku: &Sku, plan: &Plan) -> Result<Response, Problem> {
    let stub = env
        .durable_object(Namespace::SkuStock.binding())?
        .id_from_name(sku.as_str())?
        .get_stub()?;
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let url = sub::upgrade_url(sku.as_str(), plan.channel, &plan.locations, plan.max);
    let req = Request::new_with_init(&url, &init)?;
    Ok(stub.fetch_with_request(req).await?)
}

/// Hub shards when `LIVE_HUBS` is not set, and the most it may name.
pub const DEFAULT_LIVE_HUBS: u32 = 8;
pub const MAX_LIVE_HUBS: u32 = 64;

/// The hub a new multi-SKU socket goes to: one of `LIVE_HUBS`, at random
/// (spreads sockets; a SKU object pushes to at most that many hubs).
fn pick_hub(env: &Env) -> Result<String, Problem> {
    let shards = env
        .var("LIVE_HUBS")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_LIVE_HUBS)
        .clamp(1, MAX_LIVE_HUBS);
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|_| Problem::overloaded("no randomness; retry"))?;
    Ok(format!("hub-{}", u32::from_le_bytes(b) % shards))
}

async fn open(env: &Env, plan: Plan) -> Result<Response, Problem> {
    // One SKU: the client's socket IS the SKU object's. Several: a hub's
    // (objects/live_hub.rs). Either way hibernatable end to end, no relay.
    let resp = if let [sku] = plan.skus.as_slice() {
        upgrade(env, sku, &plan).await?
    } else {
        let hub = pick_hub(env)?;
        let stub = env
            .durable_object(Namespace::LiveHub.binding())?
            .id_from_name(&hub)?
            .get_stub()?;
        let headers = Headers::new();
        headers.set("Upgrade", "websocket")?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let url = crate::objects::live_hub::upgrade_url(
            &hub,
            &plan.skus,
            plan.channel,
            &plan.locations,
            plan.max,
        );
        stub.fetch_with_request(Request::new_with_init(&url, &init)?)
            .await?
    };
    let ws = resp
        .websocket()
        .ok_or_else(|| Problem::overloaded("the live subscription was not accepted"))?;
    Ok(Response::from_websocket(ws)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(origin_allowed("*", "https://shop.example"));
        assert!(origin_allowed(
            "https://a.example, https://shop.example",
            "https://shop.example"
        ));
        assert!(!origin_allowed("https://a.example", "https://shop.example"));
        assert!(!origin_allowed("", "https://shop.example"));
    }
}
