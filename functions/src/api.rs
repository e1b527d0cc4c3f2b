//! The public API: the route table, CORS, authentication, body limits and
//! the Idempotency-Key wrapper around every write. Handlers live in one file
//! per area (`inventory`, `reservations`, `catalog_api`).
use worker::{Env, Method, Request};

use crate::auth::{self, Principal, Role};
use crate::http::{self, Problem, Reply, MAX_BODY_BYTES};
use crate::idempotency::{self, IdemAnswer};
use crate::{catalog_api, inventory, openapi, pos, reservations};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a handler needs.
pub struct Ctx {
    pub env: Env,
    pub principal: Principal,
    pub body: Vec<u8>,
    pub query: Vec<(String, String)>,
    /// The validated Idempotency-Key of a write.
    pub idem_key: Option<String>,
    pub path: Vec<String>,
}

impl Ctx {
    /// The id base for stock commands of this request: stable across retries.
    pub fn op_base(&self) -> String {
        idempotency::op_base(
            &self.principal.name(),
            self.idem_key.as_deref().unwrap_or(""),
        )
    }
    pub fn actor(&self) -> String {
        self.principal.name()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Health,
    OpenApi,
    Availability,
    Receipts,
    Adjustments,
    Counts,
    SafetyStock,
    Reservations,
    Reservation,
    ReservationExtend,
    Locations,
    Location,
    Products,
    Product,
    SkuInfo,
    SkuLedger,
    Barcode,
    Bundle,
    PosSales,
    PosBatch,
}

/// Matches a path to a route and the methods it answers.
fn match_route(segs: &[&str]) -> Option<(Route, &'static [Method])> {
    use Method::*;
    Some(match segs {
        ["v1", "health"] => (Route::Health, &[Get]),
        ["v1", "openapi.json"] => (Route::OpenApi, &[Get]),
        ["v1", "availability"] => (Route::Availability, &[Get]),
        ["v1", "inventory", "receipts"] => (Route::Receipts, &[Post]),
        ["v1", "inventory", "adjustments"] => (Route::Adjustments, &[Post]),
        ["v1", "inventory", "counts"] => (Route::Counts, &[Post]),
        ["v1", "inventory", "safety-stock"] => (Route::SafetyStock, &[Put]),
        ["v1", "reservations"] => (Route::Reservations, &[Post]),
        ["v1", "reservations", _] => (Route::Reservation, &[Get, Delete]),
        ["v1", "reservations", _, "extend"] => (Route::ReservationExtend, &[Post]),
        ["v1", "locations"] => (Route::Locations, &[Get]),
        ["v1", "locations", _] => (Route::Location, &[Put, Get]),
        ["v1", "products"] => (Route::Products, &[Get]),
        ["v1", "products", _] => (Route::Product, &[Put, Get]),
        ["v1", "skus", _] => (Route::SkuInfo, &[Get]),
        ["v1", "skus", _, "ledger"] => (Route::SkuLedger, &[Get]),
        ["v1", "barcodes", _] => (Route::Barcode, &[Get]),
        ["v1", "bundles", _] => (Route::Bundle, &[Put, Get]),
        ["v1", "pos", "sales"] => (Route::PosSales, &[Post]),
        ["v1", "pos", "sales", "batch"] => (Route::PosBatch, &[Post]),
        _ => return None,
    })
}

/// Routes that any web origin may read with a publishable key.
fn cors_readable(route: Route) -> bool {
    matches!(
        route,
        Route::Health | Route::Availability | Route::Locations | Route::OpenApi
    )
}

fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
}

fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(method_name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn with_cors(mut r: Reply, cors: bool) -> Reply {
    if cors {
        r.headers
            .push(("Access-Control-Allow-Origin".into(), "*".into()));
        r.headers.push((
            "Access-Control-Expose-Headers".into(),
            "Content-Type, Retry-After".into(),
        ));
        r.headers.push(("Vary".into(), "Origin".into()));
    }
    r
}

/// The whole request, answered. Never fails: every error is a problem+json.
pub async fn handle(mut req: Request, env: Env) -> Reply {
    let raw_path = req.path();
    let segs: Vec<&str> = raw_path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let method = req.method();
    let Some((route, methods)) = match_route(&segs) else {
        return Reply::problem(&Problem::not_found("no such endpoint"));
    };
    let cors = cors_readable(route);

    if method == Method::Options {
        // CORS preflight: only the read endpoints are open to other origins.
        if cors {
            return Reply::raw(204, "text/plain", String::new())
                .header("Access-Control-Allow-Origin", "*")
                .header("Access-Control-Allow-Methods", "GET, OPTIONS")
                .header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type",
                )
                .header("Access-Control-Max-Age", "86400")
                .header("Vary", "Origin");
        }
        return Reply::problem(&Problem::forbidden(
            "cross-origin requests are allowed only for reading availability",
        ));
    }
    if !methods.contains(&method) {
        let allow = allow_header(methods);
        return with_cors(
            Reply::problem(
                &Problem::new(405, "invalid_request", format!("use {allow}")).with("allow", &allow),
            ),
            cors,
        );
    }
    if route == Route::Health {
        return with_cors(
            Reply::json(
                200,
                &serde_json::json!({"status": "ok", "version": VERSION}),
            ),
            cors,
        );
    }
    if route == Route::OpenApi {
        return with_cors(
            Reply::raw(200, "application/json", openapi::DOCUMENT.to_string()),
            cors,
        );
    }

    let reply = match authorized(&mut req, &env, route, &method, &segs).await {
        Ok(r) => r,
        Err(p) => Reply::problem(&p),
    };
    with_cors(reply, cors)
}

async fn authorized(
    req: &mut Request,
    env: &Env,
    route: Route,
    method: &Method,
    segs: &[&str],
) -> Result<Reply, Problem> {
    let keys_config = env
        .secret("API_KEYS")
        .map(|s| s.to_string())
        .or_else(|_| env.var("API_KEYS").map(|v| v.to_string()))
        .unwrap_or_default();
    let (keys, bad) = auth::parse_keys(&keys_config);
    if bad > 0 {
        worker::console_warn!("{bad} malformed API_KEYS entries ignored");
    }
    let header = req.headers().get("Authorization").ok().flatten();
    let principal = auth::authenticate(header.as_deref(), &keys)?;

    let is_write = matches!(method, Method::Post | Method::Put | Method::Delete);
    if principal.role == Role::Publishable
        && !(route == Route::Availability || route == Route::Locations)
    {
        return Err(Problem::forbidden(
            "a publishable key may only read availability and locations",
        ));
    }

    // Body: at most 64 KiB, by header and by the bytes actually read.
    if let Some(len) = req.headers().get("Content-Length").ok().flatten() {
        match len.trim().parse::<u64>() {
            Ok(n) if n > MAX_BODY_BYTES as u64 => return Err(Problem::too_large()),
            Ok(_) => {}
            Err(_) => return Err(Problem::invalid("Content-Length is not a number")),
        }
    }
    let body = if is_write {
        let b = req
            .bytes()
            .await
            .map_err(|_| Problem::invalid("the body could not be read"))?;
        if b.len() > MAX_BODY_BYTES {
            return Err(Problem::too_large());
        }
        b
    } else {
        Vec::new()
    };

    let url = req.url().map_err(|_| Problem::invalid("bad URL"))?;
    let query = http::query_pairs(&url);
    let path: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    let mut ctx = Ctx {
        env: env.clone(),
        principal,
        body,
        query,
        idem_key: None,
        path,
    };

    if !is_write {
        return dispatch(route, method, &ctx).await;
    }

    // Every write carries an Idempotency-Key.
    let key = idempotency::validate_key(req.headers().get("Idempotency-Key").ok().flatten())?;
    ctx.idem_key = Some(key.clone());
    let principal = ctx.principal.name();
    let canonical = http::canonical_body(&ctx.body);
    let fp = idempotency::fingerprint(&[
        method_name(method).as_bytes(),
        segs.join("/").as_bytes(),
        &canonical,
    ]);
    match idempotency::lookup(env, &principal, &key, &fp).await? {
        IdemAnswer::Replay { reply } => return Ok(reply.header("Idempotent-Replayed", "true")),
        IdemAnswer::Mismatch => return Err(Problem::key_reused()),
        _ => {}
    }
    let reply = match dispatch(route, method, &ctx).await {
        Ok(r) => r,
        Err(p) => Reply::problem(&p),
    };
    if !idempotency::storable(&reply) {
        return Ok(reply);
    }
    match idempotency::store(env, &principal, &key, &fp, &reply).await {
        Ok(IdemAnswer::Stored { reply: first, ours }) => {
            if ours {
                Ok(reply)
            } else {
                Ok(first.header("Idempotent-Replayed", "true"))
            }
        }
        Ok(IdemAnswer::Mismatch) => Err(Problem::key_reused()),
        // The work is done; the answer just was not kept. A retry runs the
        // same commands again, which the objects recognise.
        _ => Ok(reply),
    }
}

async fn dispatch(route: Route, method: &Method, ctx: &Ctx) -> Result<Reply, Problem> {
    match (route, method) {
        (Route::Availability, Method::Get) => inventory::availability(ctx).await,
        (Route::Receipts, Method::Post) => inventory::receipts(ctx).await,
        (Route::Adjustments, Method::Post) => inventory::adjustments(ctx).await,
        (Route::Counts, Method::Post) => inventory::counts(ctx).await,
        (Route::SafetyStock, Method::Put) => inventory::safety_stock(ctx).await,
        (Route::SkuLedger, Method::Get) => inventory::ledger(ctx).await,
        (Route::Reservations, Method::Post) => reservations::create(ctx).await,
        (Route::Reservation, Method::Get) => reservations::get(ctx).await,
        (Route::Reservation, Method::Delete) => reservations::release(ctx).await,
        (Route::ReservationExtend, Method::Post) => reservations::extend(ctx).await,
        (Route::Locations, Method::Get) => catalog_api::list_locations(ctx).await,
        (Route::Location, Method::Put) => catalog_api::put_location(ctx).await,
        (Route::Location, Method::Get) => catalog_api::get_location(ctx).await,
        (Route::Products, Method::Get) => catalog_api::list_products(ctx).await,
        (Route::Product, Method::Put) => catalog_api::put_product(ctx).await,
        (Route::Product, Method::Get) => catalog_api::get_product(ctx).await,
        (Route::SkuInfo, Method::Get) => catalog_api::get_sku(ctx).await,
        (Route::Barcode, Method::Get) => catalog_api::get_barcode(ctx).await,
        (Route::Bundle, Method::Put) => catalog_api::put_bundle(ctx).await,
        (Route::Bundle, Method::Get) => catalog_api::get_bundle(ctx).await,
        (Route::PosSales, Method::Post) => pos::sale(ctx).await,
        (Route::PosBatch, Method::Post) => pos::batch(ctx).await,
        _ => Err(Problem::not_found("no such endpoint")),
    }
}
