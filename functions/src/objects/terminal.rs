//! `Terminal`: one object per POS terminal (keyed by terminal id). It
//! applies its sales one at a time, a batch in `(device_seq, sale_id)` order,
//! and keeps every sale's answer forever: the same sale id again (with any
//! Idempotency-Key, at any time) gets the first answer, other content is
//! 409. Each sale's lines are merged per SKU (bundles become their
//! components) and sent as one `Sell` to each SKU object, which records the
//! sale id too, so a sale whose answer was lost here is applied once when
//! retried. A one-SKU sale's event for the feed goes with its `Sell` into
//! the SKU object's outbox (`wire::sku_stock::SaleEvent`); a sale of several
//! SKUs (or one no SKU object took) has it written here. Each sale's row
//! (its answer and the request's Idempotency-Key) is written in one
//! statement after its SKU objects answered.
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use futures_util::future::join_all;
use omnistock_core::bundle::expand_lines;
use omnistock_core::money::{Currency, Money};
use omnistock_core::order::parse_order_hold;
use omnistock_core::returns::{
    claim_share, split_paid, Claim, ClaimedLine, Return, ReturnError, ReturnSource,
};
use omnistock_core::tax::{Totals, ROUNDING_RULE};
use omnistock_core::{Channel, Command, Event, HoldId, ReturnId, SaleId, Sku, Timestamp};
use serde::Deserialize;
use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::customer_feed;
use super::serial::Serial;
use super::storage::{self, int, text};
use crate::extract::fingerprint;
use crate::http::{rfc3339, Problem};
use crate::wire::catalog::core_bundle;
use crate::wire::order::{self as order_wire, OrderAnswer, OrderRequest};
use crate::wire::reservation::{CoordinatorAnswer, ReservationRequest};
use crate::wire::reservation_index::{self, Located};
use crate::wire::sku_stock::{self, hold_owner, HomedAnswer, Meta, ReservationOp, SkuRequest};
use crate::wire::terminal::{ClaimLine, Sale, SaleClaim, SaleResult, SellAnswer, TerminalRequest};
use crate::wire::{self, Idem};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sales (sale_id TEXT PRIMARY KEY, fp TEXT NOT NULL,
     device_seq INTEGER NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL,
     req_key TEXT, req_fp TEXT)",
    "CREATE INDEX IF NOT EXISTS sales_by_key ON sales(req_key) WHERE req_key IS NOT NULL",
    // Order holds a sale put at risk, not yet delivered to their Order
    // objects (an outbox: written with the sale, deleted once delivered).
    "CREATE TABLE IF NOT EXISTS order_risk (hold TEXT PRIMARY KEY, order_id TEXT NOT NULL,
     at INTEGER NOT NULL)",
    // Each return's claim on a sale (returns.rs): one row per return id.
    "CREATE TABLE IF NOT EXISTS return_claims (return_id TEXT PRIMARY KEY, sale_id TEXT NOT NULL,
     fp TEXT NOT NULL, lines TEXT NOT NULL, answer TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS return_claims_by_sale ON return_claims(sale_id)",
];

/// The outbox's order column for a reservation's hold (resolved on delivery).
const RES_PREFIX: &str = "res:";

/// The reservation a hold id `res.<attempt>.<id>` belongs to.
fn reservation_of(h: &HoldId) -> Option<&str> {
    let rest = h.as_str().strip_prefix("res.")?;
    let (attempt, id) = rest.split_once('.')?;
    attempt.parse::<u32>().ok()?;
    Some(id)
}

/// A failed delivery of at-risk holds is retried by the alarm after this long.
const RISK_RETRY_MS: i64 = 5_000;
/// An undelivered at-risk hold is given up after this long (the order has
/// long been fulfilled or cancelled, or never existed).
const RISK_GIVE_UP_MS: i64 = 7 * 24 * 3_600_000;

#[derive(Deserialize)]
struct RiskRow {
    hold: String,
    order_id: String,
    at: i64,
}

/// Columns added after the first schema (a duplicate column error is
/// expected once there): `sale` keeps the sale as applied (its priced
/// lines), so returns can claim against it.
const UPGRADES: &[&str] = &["ALTER TABLE sales ADD COLUMN sale TEXT"];

#[derive(Deserialize)]
struct Row {
    fp: String,
    status: i64,
    body: String,
}

/// A one-sale request's first look, in one statement: the request
/// fingerprint its Idempotency-Key was first seen with (if it was), and the
/// sale's row (if it is recorded).
#[derive(Deserialize)]
struct FirstLook {
    key_fp: Option<String>,
    fp: Option<String>,
    status: Option<i64>,
    body: Option<String>,
}

const FIRST_LOOK: &str = "SELECT (SELECT req_fp FROM sales WHERE req_key = ?1 LIMIT 1) AS key_fp,
     s.fp AS fp, s.status AS status, s.body AS body
     FROM (SELECT 1) LEFT JOIN sales s ON s.sale_id = ?2";

#[derive(Deserialize)]
struct KeyRow {
    req_fp: String,
}

#[durable_object]
pub struct Terminal {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
    /// This terminal's id, once known (`storage::kept_name`).
    name: RefCell<Option<String>>,
    /// When this instance last forwarded the feed (`feed::due`).
    fed_at: Cell<Option<i64>>,
    /// An alarm this instance set since its last alarm ran: the one pending
    /// is at this time or earlier (alarms here are only ever brought
    /// forward), so a sale wanting a later one needs no storage call.
    alarm_by: Cell<Option<i64>>,
    /// The order_risk outbox was found empty and this instance wrote no
    /// row to it since: a sale needs no query of it (rows come only from
    /// this instance's own sales, under its serial turn).
    risk_empty: Cell<bool>,
    /// Customer offers this instance wrote to the customer feed.
    offers: Cell<u64>,
    /// `offers` when a flush of the customer feed last began and then left
    /// nothing behind: while it is still the count, the feed is empty and
    /// the alarm needs no query of it (an offer written during a flush's
    /// sends moves the count, so that flush does not vouch for it).
    flushed_at_offers: Cell<Option<u64>>,
}

impl DurableObject for Terminal {
    fn new(state: State, env: Env) -> Self {
        Terminal {
            state,
            env,
            serial: Serial::default(),
            schema_ok: Cell::new(false),
            name: RefCell::new(None),
            fed_at: Cell::new(None),
            alarm_by: Cell::new(None),
            risk_empty: Cell::new(false),
            offers: Cell::new(0),
            flushed_at_offers: Cell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        wire::serve(self, req).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // Not under the sales' serial turn: a till's sales do not wait for
        // this alarm's D1 batch and object calls (each outbox here is
        // read by cursor or flag and only sales add rows to it, so a sale
        // made meanwhile is left for the next run, and a row delivered
        // twice, by this alarm and a sale's own delivery, is applied once
        // by its receiver).
        // This alarm is the one that was pending; what it sets is unknown.
        self.alarm_by.set(None);
        // The outboxes' tables (once per instance; an error is the
        // runtime's to retry the alarm).
        self.ensure_schema()
            .map_err(|p| worker::Error::RustError(p.detail))?;
        self.feed_customers().await;
        self.fed_at.set(Some(storage::now_ms()));
        let storage = self.state.storage();
        match self.feed_source() {
            Some(source) => crate::feed::forward_and_rearm(&storage, &self.env, &source).await,
            // Neither a name nor a sale that says it: the outbox waits for
            // the next sale's alarm.
            None => worker::console_warn!("feed: a terminal without its name; forwarded later"),
        }
        let risk = self.deliver_risk().await;
        // A sale made while this ran asked for an alarm (`alarm_by`) that
        // the storage may have counted as this one, which ends now: set
        // it again from inside the handler, where it outlives the run.
        if let Some(at) = self.alarm_by.get() {
            if let Err(p) = storage::alarm_by(&storage, at).await {
                worker::console_error!(
                    "terminal: re-arming for a sale made meanwhile: {}",
                    p.detail
                );
            }
        }
        match risk {
            Ok(()) => Response::ok(""),
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for Terminal {
    async fn receive(&self, msg: &str) -> String {
        match wire::decode::<TerminalRequest>(msg) {
            Ok(TerminalRequest::Sell { sales, idem }) => wire::reply(self.sell(sales, idem).await),
            Ok(TerminalRequest::ClaimReturn {
                return_id,
                sale_id,
                lines,
            }) => wire::reply(self.claim_return(return_id, sale_id, lines).await),
            Ok(TerminalRequest::GetSale { sale_id }) => wire::reply(self.get_sale(&sale_id)),
            Err(p) => wire::reply::<()>(Err(p)),
        }
    }
}

crate::rpc_receiver!(Terminal);

impl Terminal {
    /// The event feed's source name of this terminal; `None` in an
    /// instance its alarm woke (it has no name) before any instance with
    /// the name kept it (`storage::kept_name`).
    fn feed_source(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Id {
            id: Option<String>,
        }
        let sql = self.state.storage().sql();
        let name = storage::kept_name(&self.state.id(), &sql, &self.name).and_then(|n| match n {
            Some(n) => Ok(Some(n)),
            // A terminal of the version before, not named since: its
            // sales say which it is.
            None => storage::query::<Id>(
                &sql,
                "SELECT json_extract(sale, '$.terminal_id') AS id FROM sales
                 WHERE sale IS NOT NULL LIMIT 1",
                vec![],
            )
            .map(|rows| rows.into_iter().next().and_then(|r| r.id)),
        });
        match name {
            Ok(n) => n.map(|n| format!("terminal:{n}")),
            Err(p) => {
                worker::console_error!("terminal: its name: {}", p.detail);
                None
            }
        }
    }

    fn ensure_schema(&self) -> Result<(), Problem> {
        if !self.schema_ok.get() {
            let sql = self.state.storage().sql();
            let parts = [
                SCHEMA,
                UPGRADES,
                crate::feed::SCHEMA,
                &[customer_feed::SCHEMA],
            ];
            storage::ensure_schema(&sql, &parts, || {
                for q in SCHEMA {
                    storage::exec(&sql, q, vec![])?;
                }
                for q in UPGRADES {
                    // Fails once the column exists; that is the expected case.
                    let _ = sql.exec(q, None);
                }
                storage::exec(&sql, customer_feed::SCHEMA, vec![])?;
                crate::feed::ensure(&sql)
            })?;
            // Kept for an instance its alarm wakes, which has no name.
            storage::kept_name(&self.state.id(), &sql, &self.name)?;
            self.schema_ok.set(true);
        }
        Ok(())
    }

    async fn sell(&self, mut sales: Vec<Sale>, idem: Idem) -> Result<SellAnswer, Problem> {
        let _turn = self.serial.turn().await?;
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        // The same Idempotency-Key with another request is refused here,
        // before anything is sold. A request of one sale (the common case)
        // reads its sale's row in the same statement.
        let mut first: Option<Option<Row>> = None;
        let key_fp = if let [only] = sales.as_slice() {
            let look: Vec<FirstLook> = storage::query(
                &sql,
                FIRST_LOOK,
                vec![text(&idem.key), text(only.sale_id.as_str())],
            )?;
            let look = look.into_iter().next();
            first = Some(look.as_ref().and_then(|l| {
                Some(Row {
                    fp: l.fp.clone()?,
                    status: l.status?,
                    body: l.body.clone()?,
                })
            }));
            look.and_then(|l| l.key_fp)
        } else {
            let seen: Vec<KeyRow> = storage::query(
                &sql,
                "SELECT req_fp FROM sales WHERE req_key = ? LIMIT 1",
                vec![text(&idem.key)],
            )?;
            seen.into_iter().next().map(|k| k.req_fp)
        };
        let replayed = match key_fp {
            Some(fp) if fp != idem.fp => return Err(Problem::key_reused()),
            Some(_) => true,
            None => false,
        };
        let for_customers = sales.iter().any(|s| s.customer_id.is_some());
        sales.sort_by(|a, b| {
            (a.device_seq, a.sale_id.as_str()).cmp(&(b.device_seq, b.sale_id.as_str()))
        });
        let mut results = Vec::with_capacity(sales.len());
        // A sale put its feed event in this object's own outbox (no SKU
        // object took it): the alarm forwards it.
        let mut fed_here = false;
        for s in sales {
            let id = s.sale_id.to_string();
            results.push(match self.apply(s, &idem, first.take()).await {
                Ok((r, here)) => {
                    fed_here |= here;
                    r
                }
                Err(p) => SaleResult {
                    sale_id: id,
                    status: p.status,
                    body: p.body(),
                    replayed: false,
                },
            });
        }
        // Orders whose committed units a sale took learn it (at least once:
        // what fails here stays in the outbox for the alarm).
        let risk_left = match self.deliver_risk().await {
            Ok(()) => false,
            Err(p) => {
                worker::console_warn!("at-risk delivery deferred: {}", p.detail);
                true
            }
        };
        // The event feed learns a new one-SKU sale (and from it the
        // receipts' sale index, D1's sale_terminals) with its SKU's events,
        // from that object's outbox. A sale event written here (several
        // SKUs, or no SKU object took it) goes from this object's alarm just
        // after the answer (durable, retried if it fails): feed::LINGER_MS
        // later, and not sooner than feed::MIN_INTERVAL_MS after the last
        // forward.
        // A customer's purchase goes from the same alarm, set for at once:
        // not a third object call before the answer (a receipt that needs
        // it first hands the customer the purchase itself, applied once).
        // (An at-risk delivery that failed before setting its own retry is
        // retried by the same alarm.)
        let new_sale = results.iter().any(|r| !r.replayed && r.status < 300);
        if risk_left || (new_sale && (for_customers || fed_here)) {
            let now = storage::now_ms();
            let at = if for_customers {
                now
            } else {
                crate::feed::due(now, self.fed_at.get())
            };
            if self.alarm_by.get().is_none_or(|set| set > at) {
                storage::alarm_by(&self.state.storage(), at).await?;
                self.alarm_by.set(Some(at));
            }
        }
        Ok(SellAnswer { results, replayed })
    }

    /// Customers and loyalty (issue 10): sends the customer feed (what
    /// fails stays in it, with the alarm set to retry).
    async fn feed_customers(&self) {
        let offers = self.offers.get();
        if self.flushed_at_offers.get() == Some(offers) {
            return;
        }
        match customer_feed::flush(&self.env, &self.state.storage()).await {
            Ok(None) => self.flushed_at_offers.set(Some(offers)),
            Ok(Some(_)) => {}
            Err(p) => worker::console_warn!("customer feed deferred: {}", p.detail),
        }
    }

    /// The order reservation `id` was converted into, if it was.
    async fn converted_to(&self, id: &str) -> Result<Option<String>, Problem> {
        let homed = |sku: Sku| {
            let env = &self.env;
            let op = SkuRequest::Reservation(ReservationOp::Get { id: id.into() });
            async move {
                match sku_stock::call::<HomedAnswer>(env, &sku, &op).await {
                    Ok(HomedAnswer::Here(a)) => Ok(a.view.order_id),
                    Ok(HomedAnswer::Converted { answer, .. }) => Ok(answer.view.order_id),
                    Ok(HomedAnswer::NotHere) | Err(Problem { status: 404, .. }) => Ok(None),
                    Err(p) => Err(p),
                }
            }
        };
        if let Located::Sku { sku } = reservation_index::locate(&self.env, id).await? {
            return homed(sku).await;
        }
        let a: Result<CoordinatorAnswer, Problem> = wire::call(
            &self.env,
            wire::Namespace::Reservation,
            id,
            &ReservationRequest::Get,
        )
        .await;
        match a {
            Ok(CoordinatorAnswer::Here(a)) => Ok(a.view.order_id),
            Ok(CoordinatorAnswer::Converted { answer, .. }) => Ok(answer.view.order_id),
            Ok(CoordinatorAnswer::Sku { sku }) => homed(sku).await,
            Ok(CoordinatorAnswer::Registered) | Err(Problem { status: 404, .. }) => Ok(None),
            Err(p) => Err(p),
        }
    }

    /// Sends the outbox of at-risk order holds to their Order objects; what
    /// fails stays, with the alarm set to retry.
    async fn deliver_risk(&self) -> Result<(), Problem> {
        if self.risk_empty.get() {
            return Ok(());
        }
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let rows: Vec<RiskRow> = storage::query(
            &sql,
            "SELECT hold, order_id, at FROM order_risk ORDER BY order_id LIMIT 200",
            vec![],
        )?;
        if rows.is_empty() {
            self.risk_empty.set(true);
            return Ok(());
        }
        let mut by_order: BTreeMap<String, Vec<HoldId>> = BTreeMap::new();
        let now = storage::now_ms();
        let mut left = false;
        for r in &rows {
            if r.at + RISK_GIVE_UP_MS < now {
                storage::exec(
                    &sql,
                    "DELETE FROM order_risk WHERE hold = ?",
                    vec![text(&r.hold)],
                )?;
                continue;
            }
            if let Some(res) = r.order_id.strip_prefix(RES_PREFIX) {
                match self.converted_to(res).await {
                    // Not (or not yet) an order's: nothing to tell.
                    Ok(None) => {
                        storage::exec(
                            &sql,
                            "DELETE FROM order_risk WHERE hold = ?",
                            vec![text(&r.hold)],
                        )?;
                    }
                    Ok(Some(order)) => {
                        storage::exec(
                            &sql,
                            "UPDATE order_risk SET order_id = ? WHERE hold = ?",
                            vec![text(&order), text(&r.hold)],
                        )?;
                        if let Ok(h) = HoldId::parse(&r.hold) {
                            by_order.entry(order).or_default().push(h);
                        }
                    }
                    Err(p) => {
                        worker::console_warn!("reservation {res}: not resolved: {}", p.detail);
                        left = true;
                    }
                }
                continue;
            }
            if let Ok(h) = HoldId::parse(&r.hold) {
                by_order.entry(r.order_id.clone()).or_default().push(h);
            }
        }
        let calls = join_all(by_order.iter().map(|(order, holds)| {
            let req = OrderRequest::AtRisk {
                holds: holds.clone(),
            };
            let env = &self.env;
            async move {
                let r: Result<OrderAnswer, Problem> = order_wire::call(env, order, &req).await;
                r
            }
        }))
        .await;
        for ((order, holds), r) in by_order.iter().zip(calls) {
            match r {
                // Delivered, or the order does not exist (never placed).
                Ok(_) | Err(Problem { status: 404, .. }) => {
                    for h in holds {
                        storage::exec(
                            &sql,
                            "DELETE FROM order_risk WHERE hold = ?",
                            vec![text(h.as_str())],
                        )?;
                    }
                }
                Err(p) => {
                    worker::console_warn!("order {order}: at-risk not delivered: {}", p.detail);
                    left = true;
                }
            }
        }
        if left {
            storage::alarm_by(&self.state.storage(), now + RISK_RETRY_MS).await?;
        }
        Ok(())
    }

    /// Applies one sale; `known` is its row as the caller already read it
    /// under this turn (`Some(None)`: not recorded), else it is read here.
    /// Also says whether its feed event went into this object's outbox.
    async fn apply(
        &self,
        s: Sale,
        idem: &Idem,
        known: Option<Option<Row>>,
    ) -> Result<(SaleResult, bool), Problem> {
        let sql = self.state.storage().sql();
        let row = match known {
            Some(row) => row,
            None => storage::query::<Row>(
                &sql,
                "SELECT fp, status, body FROM sales WHERE sale_id = ?",
                vec![text(s.sale_id.as_str())],
            )?
            .into_iter()
            .next(),
        };
        if let Some(r) = &row {
            if r.fp != s.fp {
                return Err(Problem::new(
                    409,
                    "idempotency_key_reused",
                    format!("sale {} was already recorded with other content", s.sale_id),
                ));
            }
            let replay = SaleResult {
                sale_id: s.sale_id.to_string(),
                status: r.status as u16,
                body: serde_json::from_str(&r.body)?,
                replayed: true,
            };
            return Ok((replay, false));
        }
        // The tax the Worker recorded on the lines, checked before anything
        // is sold (a sale whose tax does not fit its lines is refused).
        let tax = s.recorded_tax()?;
        let totals = Totals::of(tax.currency, &tax.lines)
            .map_err(|e| Problem::invalid(format!("sale totals: {e}")))?;
        // One Sell per SKU: lines of the same SKU add up.
        let plain: Vec<(Sku, i64)> = s.lines.iter().map(|l| (l.sku.clone(), l.qty)).collect();
        let bundles = s
            .lines
            .iter()
            .filter(|l| !l.components.is_empty())
            .map(|l| Ok((l.sku.clone(), core_bundle(&l.sku, &l.components)?)))
            .collect::<Result<BTreeMap<_, _>, Problem>>()?;
        let per_sku = expand_lines(&plain, &bundles)?;
        let meta = Meta {
            actor: s.actor.clone(),
            channel: Some("pos".into()),
            reference: Some(format!("sale:{}", s.sale_id)),
            reason: Some("sale".into()),
        };
        // A one-SKU sale's feed event rides with its Sell (into the SKU
        // object's outbox, in the transaction of its one stock change). A
        // sale of several SKUs writes its event here once every SKU object
        // answered, so no event tells of a sale only partly applied. A sale
        // whose event does not encode (never, for a validated sale) is
        // logged, never refused.
        let event = match crate::feed::sale_event(&s) {
            Ok(ev) => Some(ev),
            Err(p) => {
                worker::console_error!("feed: sale {} not fed: {}", s.sale_id, p.detail);
                None
            }
        };
        let encoded = event.is_some();
        let mut event = event.filter(|_| per_sku.len() == 1);
        let results = join_all(per_sku.iter().map(|(sku, qty)| {
            sku_stock::sell(
                &self.env,
                sku,
                Command::Sell {
                    sale: s.sale_id.clone(),
                    terminal: s.terminal_id.clone(),
                    device_seq: s.device_seq,
                    location: s.location.clone(),
                    qty: *qty,
                    occurred_at: Timestamp::from_ms(s.occurred_at),
                },
                &meta,
                event.take(),
            )
        }))
        .await;
        let mut lines = Vec::new();
        let mut at_risk = Vec::new();
        let mut outbox: Vec<(HoldId, String)> = Vec::new();
        let mut any_oversold = false;
        let mut fed = false;
        for ((sku, qty), r) in per_sku.iter().zip(results) {
            let o = r?;
            fed |= o.fed;
            if let Some(p) = o.problem() {
                return Err(p);
            }
            let (oversold, late, risk) = o
                .events()
                .iter()
                .find_map(|e| match e {
                    Event::Sold {
                        oversold,
                        late,
                        at_risk,
                        ..
                    } => Some((*oversold, *late, at_risk.clone())),
                    _ => None,
                })
                .unwrap_or_default();
            any_oversold |= oversold > 0;
            for h in &risk {
                if let Some((order, _)) = parse_order_hold(h) {
                    outbox.push((h.clone(), order.to_string()));
                } else if let Some(res) = reservation_of(h) {
                    // A reservation's hold: an order's once it converted
                    // (resolved when delivered).
                    outbox.push((h.clone(), format!("{RES_PREFIX}{res}")));
                }
                let mut x = hold_owner(h);
                x["sku"] = json!(sku);
                x["location"] = json!(s.location);
                at_risk.push(x);
            }
            let available = o.position.map(|p| p.available(Channel::Pos));
            lines.push(json!({
                "sku": sku, "qty": qty, "oversold": oversold, "available_after": available,
                "late": late,
            }));
        }
        let body = json!({
            "sale_id": s.sale_id,
            "terminal_id": s.terminal_id,
            "device_seq": s.device_seq,
            "location": s.location,
            "occurred_at": rfc3339(s.occurred_at),
            "customer_id": s.customer_id,
            "status": "recorded",
            "oversold": any_oversold,
            "lines": lines,
            // The sale's lines as recorded, with the price charged (the
            // catalog's POS price where the till named none) and the tax
            // computed when it was made.
            "items": s.lines.iter().zip(&tax.lines).map(|(l, t)| json!({
                "sku": l.sku, "qty": l.qty, "unit_price": l.unit_price,
                "tax": {"rate": t.rate.normalize().to_string(), "net": t.net, "tax": t.tax, "gross": t.gross},
            })).collect::<Vec<_>>(),
            // What the customer owes for it: the sums of the lines (its
            // receipt and the accounting export state the same, to the cent).
            "totals": {
                "net": totals.net.amount.to_string(),
                "tax": totals.tax.amount.to_string(),
                "gross": totals.gross.amount.to_string(),
                "currency": tax.currency.as_str(),
                "tax_inclusive": tax.inclusive,
                "rounding": ROUNDING_RULE,
            },
            "at_risk": at_risk,
            "payments": s.payments,
        });
        let now = storage::now_ms();
        let mut stmts: Vec<storage::Stmt> = vec![(
            "INSERT OR REPLACE INTO sales (sale_id, fp, device_seq, status, body, at, req_key, req_fp,
             sale) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(s.sale_id.as_str()),
                text(&s.fp),
                int(s.device_seq as i64),
                int(201),
                text(&body.to_string()),
                int(now),
                text(&idem.key),
                text(&idem.fp),
                text(&serde_json::to_string(&s)?),
            ],
        )];
        for (h, order) in &outbox {
            stmts.push((
                "INSERT OR REPLACE INTO order_risk (hold, order_id, at) VALUES (?, ?, ?)",
                vec![text(h.as_str()), text(order), int(now)],
            ));
        }
        // Customers and loyalty (issue 10): the sale of a customer is offered to them.
        let offered = match customer_feed::sale_offer(&s) {
            Some(o) => {
                stmts.push(customer_feed::offer_stmt(&o)?);
                true
            }
            None => false,
        };
        // The sale's feed event, here only when no SKU object took it (one
        // of the version before: it ignores the event and says not `fed`).
        let fed_here = encoded && !fed;
        if fed_here {
            match crate::feed::sale_outbox(&s) {
                Ok(row) => stmts.push(row),
                Err(p) => worker::console_error!("feed: sale {} not fed: {}", s.sale_id, p.detail),
            }
        }
        // The sale's answer and its outboxes together (the feed goes out
        // from the alarm: sell()).
        if !outbox.is_empty() {
            self.risk_empty.set(false);
        }
        if offered {
            self.offers.set(self.offers.get().wrapping_add(1));
        }
        storage::atomically(&self.state.storage(), stmts)?;
        let made = SaleResult {
            sale_id: s.sale_id.to_string(),
            status: 201,
            body,
            replayed: false,
        };
        Ok((made, fed_here))
    }

    /// A return's claim on one of this terminal's sales: refused (400
    /// `invalid_request`, `lines: [{sku, requested, returnable}]`) beyond
    /// what the sale sold minus what other returns claimed (core's
    /// `Return::initiate` rule); the same return id again gets its first
    /// answer, with other lines 409. The claim's paid amounts are core's
    /// shares of the sale's line prices (bundles split over components).
    async fn claim_return(
        &self,
        return_id: String,
        sale_id: SaleId,
        lines: Vec<ClaimLine>,
    ) -> Result<SaleClaim, Problem> {
        let _turn = self.serial.turn().await?;
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let fp = fingerprint(&[serde_json::to_string(&(&sale_id, &lines))?.as_bytes()]);
        let old: Vec<ClaimRow> = storage::query(
            &sql,
            "SELECT sale_id, fp, lines, answer FROM return_claims WHERE return_id = ?",
            vec![text(&return_id)],
        )?;
        if let Some(o) = old.first() {
            if o.fp != fp {
                return Err(Problem::new(
                    409,
                    "idempotency_key_reused",
                    format!("return {return_id} already claimed other lines"),
                ));
            }
            return Ok(serde_json::from_str(&o.answer)?);
        }
        let rows: Vec<SaleRow> = storage::query(
            &sql,
            "SELECT sale FROM sales WHERE sale_id = ? AND status = 201",
            vec![text(sale_id.as_str())],
        )?;
        let sale: Sale = match rows.first() {
            Some(SaleRow { sale: Some(json) }) => serde_json::from_str(json)?,
            Some(_) => {
                return Err(Problem::invalid(format!(
                    "sale {sale_id} was recorded before returns kept its prices"
                )))
            }
            None => return Err(Problem::not_found(format!("unknown sale: {sale_id}"))),
        };
        let (currency, sold) = sold_per_sku(&sale)?;
        // What other returns of this sale claimed, per SKU.
        let others: Vec<ClaimRow> = storage::query(
            &sql,
            "SELECT sale_id, fp, lines, answer FROM return_claims WHERE sale_id = ?",
            vec![text(sale_id.as_str())],
        )?;
        let mut claimed: BTreeMap<Sku, i64> = BTreeMap::new();
        for o in &others {
            let ls: Vec<ClaimLine> = serde_json::from_str(&o.lines)?;
            for l in ls {
                *claimed.entry(l.sku).or_insert(0) += l.qty;
            }
        }
        let plain: Vec<(Sku, i64)> = lines.iter().map(|l| (l.sku.clone(), l.qty)).collect();
        let rid = ReturnId::parse(&return_id).map_err(|e| Problem::invalid(format!("id: {e}")))?;
        let checked = Return::initiate(
            rid,
            ReturnSource::Sale(sale_id.clone()),
            &plain,
            |sku| sold.get(sku).map_or(0, |(q, _)| *q),
            |sku| claimed.get(sku).copied().unwrap_or(0),
        );
        let merged = match checked {
            Ok(r) => r.lines,
            Err(e @ (ReturnError::NotSold { .. } | ReturnError::ExceedsSold { .. })) => {
                let mut per: BTreeMap<Sku, i64> = BTreeMap::new();
                for (sku, q) in &plain {
                    *per.entry(sku.clone()).or_insert(0) += q;
                }
                let over: Vec<serde_json::Value> = per
                    .iter()
                    .filter_map(|(sku, q)| {
                        let s = sold.get(sku).map_or(0, |(n, _)| *n);
                        let left = s - claimed.get(sku).copied().unwrap_or(0);
                        (*q > left)
                            .then(|| json!({"sku": sku, "requested": q, "returnable": left.max(0)}))
                    })
                    .collect();
                return Err(Problem::invalid(format!(
                    "more than sale {sale_id} sold, counting earlier returns ({e})"
                ))
                .with("lines", over));
            }
            Err(e) => return Err(Problem::invalid(e.to_string())),
        };
        let mut out = Vec::new();
        for (sku, qty) in &merged {
            let (n, paid) = sold
                .get(sku)
                .ok_or_else(|| Problem::invalid(format!("{sku} was not sold")))?;
            let before = claimed.get(sku).copied().unwrap_or(0);
            let paid = claim_share(*paid, *n, before, *qty)
                .map_err(|e| Problem::invalid(e.to_string()))?;
            out.push(ClaimedLine {
                sku: sku.clone(),
                qty: *qty,
                location: sale.location.clone(),
                paid,
            });
        }
        let answer = SaleClaim {
            claim: Claim {
                currency,
                lines: out,
            },
            location: sale.location.clone(),
            customer_id: sale.customer_id.clone(),
        };
        let merged_lines: Vec<ClaimLine> = merged
            .iter()
            .map(|(sku, qty)| ClaimLine {
                sku: sku.clone(),
                qty: *qty,
            })
            .collect();
        storage::exec(
            &sql,
            "INSERT INTO return_claims (return_id, sale_id, fp, lines, answer, at)
             VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                text(&return_id),
                text(sale_id.as_str()),
                text(&fp),
                text(&serde_json::to_string(&merged_lines)?),
                text(&serde_json::to_string(&answer)?),
                int(storage::now_ms()),
            ],
        )?;
        Ok(answer)
    }
}

impl Terminal {
    /// Receipts (issue 14): a recorded sale as applied (its priced lines).
    fn get_sale(&self, sale_id: &SaleId) -> Result<Option<Sale>, Problem> {
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let rows: Vec<SaleRow> = storage::query(
            &sql,
            "SELECT sale FROM sales WHERE sale_id = ? AND status = 201",
            vec![text(sale_id.as_str())],
        )?;
        match rows.first() {
            Some(SaleRow { sale: Some(json) }) => Ok(Some(serde_json::from_str(json)?)),
            _ => Ok(None),
        }
    }
}

#[derive(Deserialize)]
struct ClaimRow {
    #[allow(dead_code)]
    sale_id: String,
    fp: String,
    lines: String,
    answer: String,
}

#[derive(Deserialize)]
struct SaleRow {
    sale: Option<String>,
}

/// Units sold and what was paid for them, per SKU.
type SoldPerSku = BTreeMap<Sku, (i64, Money)>;

/// Units sold and paid per SKU (bundle lines become their components, the
/// bundle's price split over them by core); one currency per sale.
fn sold_per_sku(sale: &Sale) -> Result<(Currency, SoldPerSku), Problem> {
    let mut currency: Option<Currency> = None;
    let mut out: BTreeMap<Sku, (i64, Money)> = BTreeMap::new();
    let bad = |e: &dyn std::fmt::Display| Problem::invalid(format!("sale prices: {e}"));
    for l in &sale.lines {
        let unit =
            Money::parse(&l.unit_price.amount, &l.unit_price.currency).map_err(|e| bad(&e))?;
        if *currency.get_or_insert(unit.currency) != unit.currency {
            return Err(Problem::invalid("the sale has lines in several currencies"));
        }
        let total = unit.checked_mul_qty(l.qty).map_err(|e| bad(&e))?;
        let parts: Vec<(Sku, i64, Money)> = if l.components.is_empty() {
            vec![(l.sku.clone(), l.qty, total)]
        } else {
            let weights: Vec<i64> = l.components.iter().map(|c| c.qty).collect();
            let shares = split_paid(total, &weights).map_err(|e| bad(&e))?;
            l.components
                .iter()
                .zip(shares)
                .map(|(c, m)| (c.sku.clone(), c.qty * l.qty, m))
                .collect()
        };
        for (sku, qty, paid) in parts {
            let e = out.entry(sku).or_insert((0, Money::zero(unit.currency)));
            e.0 += qty;
            e.1 = e.1.checked_add(paid).map_err(|e| bad(&e))?;
        }
    }
    let currency = currency.ok_or_else(|| Problem::invalid("the sale has no lines"))?;
    Ok((currency, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::catalog::{BundleComponent, Money as WireMoney};
    use crate::wire::terminal::SaleLine;
    use omnistock_core::{LocationId, TerminalId};

    fn line(sku: &str, qty: i64, price: &str, components: Vec<BundleComponent>) -> SaleLine {
        SaleLine {
            sku: Sku::parse(sku).unwrap(),
            components,
            barcode: None,
            qty,
            unit_price: WireMoney {
                amount: price.into(),
                currency: "EUR".into(),
            },
            tax: None,
        }
    }

    fn eur(a: &str) -> Money {
        Money::parse(a, "EUR").unwrap()
    }

    #[test]
    fn a_sale_is_paid_per_sku_with_bundle_prices_split_over_components() {
        let comp = |s: &str, q: i64| BundleComponent {
            sku: Sku::parse(s).unwrap(),
            qty: q,
        };
        let sale = Sale {
            sale_id: SaleId::parse("s1").unwrap(),
            terminal_id: TerminalId::parse("t1").unwrap(),
            device_seq: 1,
            location: LocationId::parse("store-1").unwrap(),
            occurred_at: 0,
            customer_id: None,
            lines: vec![
                line("A", 2, "5.00", vec![]),
                // Two bundles of 1 A + 2 B at 10.00: 6.66 to A, 13.34 to B.
                line("KIT", 2, "10.00", vec![comp("A", 1), comp("B", 2)]),
                line("A", 1, "4.00", vec![]),
            ],
            payments: vec![],
            fp: String::new(),
            actor: "pos".into(),
            tax_inclusive: None,
        };
        let (currency, sold) = sold_per_sku(&sale).unwrap();
        assert_eq!(currency.as_str(), "EUR");
        let a = &sold[&Sku::parse("A").unwrap()];
        let b = &sold[&Sku::parse("B").unwrap()];
        assert_eq!((a.0, a.1), (5, eur("20.66")));
        assert_eq!((b.0, b.1), (4, eur("13.34")));
        assert!(!sold.contains_key(&Sku::parse("KIT").unwrap()));
        // Mixed currencies are refused.
        let mut mixed = sale.clone();
        mixed.lines[0].unit_price.currency = "USD".into();
        assert!(sold_per_sku(&mixed).is_err());
    }
}
