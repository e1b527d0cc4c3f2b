//! The one route table: path pattern, method, the roles that may call it,
//! whether any web origin may read it, and its handler. The router below
//! turns a request into a [`Ctx`] (authentication, body limit,
//! Idempotency-Key) and answers every failure as problem+json.
use futures_util::future::LocalBoxFuture;
use worker::{Env, Method, Request};

use crate::api;
use crate::auth::Role;
use crate::cache;
use crate::extract::{self, Ctx};
use crate::http::{HttpResult, Problem, Reply};
use crate::objects::storage::now_ms;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub type Handler = for<'a> fn(&'a Ctx) -> LocalBoxFuture<'a, HttpResult>;

pub struct Route {
    /// Segments after the first `/`; `:name` matches any one segment.
    pub path: &'static str,
    pub method: Method,
    /// Who may call it; empty: no key needed.
    pub roles: &'static [Role],
    /// Readable by any web origin (CORS), with a publishable key.
    pub cors: bool,
    pub handler: Handler,
}

const ANYONE: &[Role] = &[];
const ALL: &[Role] = &[Role::Admin, Role::Storefront, Role::Pos, Role::Publishable];
const READERS: &[Role] = &[Role::Admin, Role::Storefront, Role::Pos];
const ADMIN: &[Role] = &[Role::Admin];
const SHOP: &[Role] = &[Role::Admin, Role::Storefront];
const TILL: &[Role] = &[Role::Admin, Role::Pos];

/// Wraps an `async fn(&Ctx) -> HttpResult` as a [`Handler`].
macro_rules! h {
    ($f:path) => {{
        fn handler<'a>(c: &'a Ctx) -> LocalBoxFuture<'a, HttpResult> {
            Box::pin($f(c))
        }
        handler as Handler
    }};
}

macro_rules! route {
    ($method:ident $path:literal, $roles:expr, $cors:expr, $f:path) => {
        Route {
            path: $path,
            method: Method::$method,
            roles: $roles,
            cors: $cors,
            handler: h!($f),
        }
    };
}

pub fn table() -> &'static [Route] {
    use api::{
        availability, catalog, imports, inventory, orders, pos, receipts, reservations, returns,
        transfers, unavailable,
    };
    static ROUTES: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        vec![
            route!(Get "v1/health", ANYONE, true, api::health),
            route!(Get "v1/openapi.json", ANYONE, true, api::openapi),
            route!(Get "v1/config/fulfillment", READERS, false, api::fulfillment_config),
            route!(Get "v1/dev/keys", ANYONE, false, api::demo_keys),
            route!(Get "v1/availability", ALL, true, availability::get),
            route!(Post "v1/inventory/receipts", ADMIN, false, inventory::receipts),
            route!(Post "v1/inventory/adjustments", ADMIN, false, inventory::adjustments),
            route!(Post "v1/inventory/counts", TILL, false, inventory::counts),
            route!(Put "v1/inventory/safety-stock", ADMIN, false, inventory::safety_stock),
            route!(Post "v1/inventory/unavailable", TILL, false, unavailable::post),
            route!(Get "v1/skus/:sku/ledger", TILL, false, inventory::ledger),
            route!(Post "v1/reservations", SHOP, false, reservations::create),
            route!(Get "v1/reservations/:id", SHOP, false, reservations::get),
            route!(Delete "v1/reservations/:id", SHOP, false, reservations::release),
            route!(Post "v1/reservations/:id/extend", SHOP, false, reservations::extend),
            route!(Get "v1/locations", ALL, true, catalog::list_locations),
            route!(Put "v1/locations/:id", ADMIN, false, catalog::put_location),
            route!(Get "v1/locations/:id", READERS, false, catalog::get_location),
            route!(Get "v1/products", READERS, false, catalog::list_products),
            // Catalog import (issue 11): see api/imports.rs.
            route!(Post "v1/catalog/imports", ADMIN, false, imports::create),
            route!(Get "v1/catalog/imports/:id", ADMIN, false, imports::get),
            route!(Post "v1/catalog/imports/:id/apply", ADMIN, false, imports::apply),
            route!(Put "v1/products/:id", ADMIN, false, catalog::put_product),
            route!(Get "v1/products/:id", READERS, false, catalog::get_product),
            route!(Get "v1/skus/:sku", READERS, false, catalog::get_sku),
            route!(Get "v1/barcodes/:code", READERS, false, catalog::get_barcode),
            route!(Put "v1/bundles/:sku", ADMIN, false, catalog::put_bundle),
            route!(Get "v1/bundles/:sku", READERS, false, catalog::get_bundle),
            route!(Post "v1/pos/sales", TILL, false, pos::sale),
            route!(Post "v1/pos/sales/batch", TILL, false, pos::batch),
            route!(Post "v1/orders", READERS, false, orders::create),
            route!(Get "v1/orders", READERS, false, orders::list),
            route!(Get "v1/orders/:id", READERS, false, orders::get),
            route!(Post "v1/orders/:id/transitions", READERS, false, orders::transition),
            route!(Post "v1/transfers", ADMIN, false, transfers::create),
            route!(Get "v1/transfers/:id", ADMIN, false, transfers::get),
            route!(Post "v1/transfers/:id/ship", ADMIN, false, transfers::ship),
            route!(Post "v1/transfers/:id/receive", ADMIN, false, transfers::receive),
            route!(Post "v1/transfers/:id/cancel", ADMIN, false, transfers::cancel),
            // Returns (issue 8): see api/returns.rs.
            route!(Post "v1/returns", READERS, false, returns::initiate),
            route!(Get "v1/returns/:id", READERS, false, returns::get),
            route!(Post "v1/returns/:id/receive", TILL, false, returns::receive),
            route!(Post "v1/returns/:id/refund", TILL, false, returns::refund),
            route!(Post "v1/returns/:id/exchange", TILL, false, returns::exchange),
            // Receipts (issue 14): see api/receipts.rs.
            route!(Get "v1/receipts/:id", READERS, false, receipts::get),
            route!(Post "v1/receipts/:id/email", READERS, false, receipts::email),
            // Customers and loyalty (issue 10): see api/customers.rs.
            route!(Get "v1/customers", READERS, false, api::customers::lookup),
            route!(Put "v1/customers/:id", READERS, false, api::customers::put),
            route!(Get "v1/customers/:id", READERS, false, api::customers::get),
            route!(Post "v1/customers/:id/loyalty/redeem", READERS, false, api::customers::redeem),
            route!(Post "v1/customers/:id/erase", ADMIN, false, api::customers::erase),
            // Reports and accounting (issue 10): see api/reports.rs.
            route!(Get "v1/reports/weekly", ADMIN, false, api::reports::weekly),
            route!(Post "v1/reports/weekly/build", ADMIN, false, api::reports::build),
            route!(Get "v1/accounting/export", ADMIN, false, api::reports::export),
            route!(Get "v1/accounting/sync", ADMIN, false, api::reports::sync_status),
            route!(Post "v1/accounting/sync", ADMIN, false, api::reports::sync_now),
        ]
    })
}

/// Whether a path's segments match a route pattern (`:name` is any one
/// segment). Public for the fuzz targets (fuzz/tests/requests.rs).
pub fn matches(pattern: &str, segs: &[&str]) -> bool {
    let mut n = 0;
    for (i, p) in pattern.split('/').enumerate() {
        match segs.get(i) {
            Some(s) if p.starts_with(':') || p == *s => n += 1,
            _ => return false,
        }
    }
    n == segs.len()
}

fn is_write(m: &Method) -> bool {
    matches!(m, Method::Post | Method::Put | Method::Delete)
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
/// `background`: the request's `waitUntil` (work after the answer; the edge cache's refresh).
/// Every answer carries a `Request-Id` (a UUIDv7); a problem+json also has it
/// as `request_id`, and so does the log line of a 5xx (issue 12).
pub async fn handle(req: Request, env: Env, background: Option<worker::Context>) -> Reply {
    let id = request_id(now_ms());
    let mut reply = answer(req, env, background).await;
    if reply.content_type == crate::http::PROBLEM_JSON {
        if let Ok(serde_json::Value::Object(mut m)) =
            serde_json::from_str::<serde_json::Value>(&reply.body)
        {
            m.insert("request_id".into(), serde_json::Value::String(id.clone()));
            reply.body = serde_json::Value::Object(m).to_string();
        }
    }
    // A 503 (shed by the in-flight bound, or by an object's bounded queue)
    // is counted, not logged one by one: under overload a log line per
    // answer is work the isolate lacks. Other 5xx are logged each.
    if reply.status == 503 {
        crate::overload::note_shed(now_ms());
    } else if reply.status >= 500 {
        worker::console_warn!("request {id}: answered {}", reply.status);
    }
    reply.header("Request-Id", &id)
}

/// A UUIDv7 for a request: the time and 74 random bits (an all-zero random
/// part if the random source fails: an id must not fail the request).
fn request_id(now_ms: i64) -> String {
    let mut rand = [0u8; 10];
    let _ = getrandom::fill(&mut rand);
    let ms = u64::try_from(now_ms).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &rand)
        .into_uuid()
        .hyphenated()
        .to_string()
}

async fn answer(mut req: Request, env: Env, background: Option<worker::Context>) -> Reply {
    let raw_path = req.path();
    let segs: Vec<&str> = raw_path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let method = req.method();
    // schemathesis (issue 12): the worker crate reads any method it does not
    // know (QUERY, PROPFIND, ...) as GET; those must be a 405 like any other.
    let known = Method::all()
        .iter()
        .any(|m| m.as_ref() == req.inner().method().to_ascii_uppercase());
    let on_path: Vec<&Route> = table().iter().filter(|r| matches(r.path, &segs)).collect();
    if on_path.is_empty() {
        return Reply::problem(&Problem::not_found("no such endpoint"));
    }
    let cors = on_path.iter().any(|r| r.cors);
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
    let Some(route) = on_path.iter().find(|r| known && r.method == method) else {
        let allow = on_path
            .iter()
            .map(|r| r.method.as_ref())
            .collect::<Vec<_>>()
            .join(", ");
        return with_cors(
            Reply::problem(
                &Problem::new(405, "invalid_request", format!("use {allow}")).with("allow", &allow),
            )
            .header("Allow", &allow),
            cors,
        );
    };
    // Overload (issue 12, overload.rs): a bound on requests in flight in
    // this isolate; one more is a 503 at once, not a queue.
    let limits = crate::overload::limits(&env);
    let _slot = match crate::overload::admit(limits) {
        Ok(s) => s,
        Err(p) => return with_cors(Reply::problem(&p), route.cors),
    };
    let reply = match prepare(&mut req, env, route, &segs, background).await {
        Ok(ctx) => run(route, &ctx).await,
        Err(p) => Reply::problem(&p),
    };
    with_cors(reply, route.cors)
}

/// Authenticates, checks the role, reads the body of a write and its key.
async fn prepare(
    req: &mut Request,
    env: Env,
    route: &Route,
    segs: &[&str],
    background: Option<worker::Context>,
) -> Result<Ctx, Problem> {
    let principal = if route.roles.is_empty() {
        crate::auth::Principal {
            role: Role::Publishable,
            location: None,
            key_name: None,
        }
    } else {
        let p = extract::principal(req, &env)?;
        if !route.roles.contains(&p.role) {
            return Err(Problem::forbidden(if p.role == Role::Publishable {
                "a publishable key may only read availability and locations".to_string()
            } else {
                format!("a {} key may not do this", p.role.as_str())
            }));
        }
        // Per key, per isolate (issue 12, overload.rs): 429 beyond the rate.
        let ip = req.headers().get("CF-Connecting-IP").ok().flatten();
        let caller = crate::overload::caller(&p, ip.as_deref());
        crate::overload::rate(crate::overload::limits(&env), &caller, now_ms())?;
        p
    };
    let write = is_write(&route.method);
    let body = if write {
        let max = if route.path == "v1/catalog/imports" {
            crate::api::imports::MAX_CSV_BYTES
        } else {
            crate::http::MAX_BODY_BYTES
        };
        extract::body(req, max).await?
    } else {
        Vec::new()
    };
    let url = req.url().map_err(|_| Problem::invalid("bad URL"))?;
    let idem = if write {
        let key = extract::validate_key(req.headers().get("Idempotency-Key").ok().flatten())?;
        Some(extract::idem(
            &principal,
            &key,
            &route.method,
            &segs.join("/"),
            &body,
        ))
    } else {
        None
    };
    Ok(Ctx {
        env,
        principal,
        body,
        query: crate::http::query_pairs(&url),
        path: segs.iter().map(|s| s.to_string()).collect(),
        idem,
        now: now_ms(),
        content_type: req.headers().get("Content-Type").ok().flatten(),
        accept: req.headers().get("Accept").ok().flatten(),
        respond_async: req.headers().get("Prefer").ok().flatten().is_some_and(|p| {
            p.split(',')
                .any(|x| x.trim().eq_ignore_ascii_case("respond-async"))
        }),
        background,
    })
}

/// Runs the handler. A write's key is checked against the keys this isolate
/// saw (the owning object checks the keys it saw), and remembered once
/// answered.
async fn run(route: &Route, ctx: &Ctx) -> Reply {
    if let Some(i) = &ctx.idem {
        if cache::key_reused(ctx.now, &i.key, &i.fp) {
            return Reply::problem(&Problem::key_reused());
        }
    }
    // Answered: a success or a business refusal (409), which the owning
    // object keeps under the key; not an input error or a transient failure.
    let (reply, answered) = match (route.handler)(ctx).await {
        Ok(r) => {
            let ok = (200..300).contains(&r.status);
            (r, ok)
        }
        Err(p) => (Reply::problem(&p), p.status == 409 && !p.is_key_reused()),
    };
    if let (Some(i), true) = (&ctx.idem, answered) {
        cache::remember_key(ctx.now, &i.key, &i.fp);
    }
    reply
}
