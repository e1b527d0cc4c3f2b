//! `Reservation`: the coordinator of one reservation (a cart or checkout),
//! keyed by the reservation id. It runs the two-phase protocol over the SKU
//! objects: hold in every SKU object in parallel; if any refuses, release the
//! ones held. Holds carry their TTL, so each SKU object's alarm expires them
//! on its own if this coordinator dies mid-way: nothing leaks.
//!
//! Hold ids are `res.<attempt>.<reservation id>`: a failed attempt's holds
//! are released, and a later attempt with the same reservation id must not
//! be mistaken for a retry of the failed one.
use std::cell::Cell;

use futures_util::future::join_all;
use omnistock_core::{Channel, HoldId, LocationId, Sku};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use crate::db::{self, text};
use crate::http::{envelope_response, rfc3339, Problem};
use crate::rpc::{self, SKU_STOCK};
use crate::serial::take_turn;
use crate::sku_stock::{ExecRequest, Meta, Outcome, WireCommand};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResLine {
    pub sku: Sku,
    pub qty: i64,
    pub location: LocationId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    pub lines: Vec<ResLine>,
    pub ttl_ms: i64,
    pub channel: Channel,
    /// Fingerprint of the content (lines, fulfillment, ttl): the same id with
    /// other content is refused.
    pub fp: String,
    pub actor: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ResRequest {
    Create(CreateRequest),
    Get,
    Extend { ttl_ms: i64, actor: String },
    Release { actor: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Active,
    Released,
    Expired,
    Failed,
}

impl Status {
    fn as_str(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Released => "released",
            Status::Expired => "expired",
            Status::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    fp: String,
    status: Status,
    attempt: u32,
    lines: Vec<ResLine>,
    ttl_ms: i64,
    channel: Channel,
    expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl Record {
    fn hold_id(&self) -> Result<HoldId, Problem> {
        HoldId::parse(&format!("res.{}.{}", self.attempt, self.id))
            .map_err(|e| Problem::invalid(format!("reservation id: {e}")))
    }

    /// The status at `now`: an active reservation past its deadline is expired.
    fn status_at(&self, now: i64) -> Status {
        match (&self.status, self.expires_at) {
            (Status::Active, Some(t)) if t <= now => Status::Expired,
            (s, _) => s.clone(),
        }
    }
}

/// What the API returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct View {
    pub id: String,
    pub status: String,
    pub expires_at: Option<String>,
    pub lines: Vec<ResLine>,
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateAnswer {
    pub created: bool,
    pub reservation: View,
}

fn view(r: &Record, now: i64) -> View {
    View {
        id: r.id.clone(),
        status: r.status_at(now).as_str().to_string(),
        expires_at: r.expires_at.map(rfc3339),
        lines: r.lines.clone(),
        created_at: rfc3339(r.created_at),
    }
}

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[durable_object]
pub struct Reservation {
    state: State,
    env: Env,
    busy: Cell<bool>,
}

impl DurableObject for Reservation {
    fn new(state: State, env: Env) -> Self {
        Reservation {
            state,
            env,
            busy: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let parsed: ResRequest = match rpc::read_request(&mut req, "reservation").await {
            Ok(x) => x,
            Err(p) => return envelope_response::<()>(Err(p)),
        };
        if let ResRequest::Get = parsed {
            return envelope_response(self.get());
        }
        // One write at a time per reservation: a concurrent retry waits for
        // the first try instead of racing it.
        let _turn = match take_turn(&self.busy, 3000).await {
            Ok(t) => t,
            Err(p) => return envelope_response::<()>(Err(p)),
        };
        match parsed {
            ResRequest::Create(c) => envelope_response(self.create(c).await),
            ResRequest::Extend { ttl_ms, actor } => {
                envelope_response(self.extend(ttl_ms, actor).await)
            }
            ResRequest::Release { actor } => envelope_response(self.release(actor).await),
            ResRequest::Get => envelope_response(self.get()),
        }
    }
}

/// Sends one command to one SKU object and returns its outcome.
async fn send(env: &Env, sku: &Sku, cmd: WireCommand, meta: &Meta) -> Result<Outcome, Problem> {
    let mut v: Vec<Outcome> = rpc::call(
        env,
        SKU_STOCK,
        sku.as_str(),
        "exec",
        &ExecRequest {
            cmds: vec![cmd],
            meta: meta.clone(),
        },
    )
    .await?;
    v.pop()
        .ok_or_else(|| Problem::overloaded("empty answer from a SKU object"))
}

impl Reservation {
    fn load(&self) -> Result<Option<Record>, Problem> {
        let sql = self.state.storage().sql();
        db::exec(
            &sql,
            "CREATE TABLE IF NOT EXISTS reservation (k TEXT PRIMARY KEY, json TEXT NOT NULL)",
            vec![],
        )?;
        let rows: Vec<JsonRow> =
            db::query(&sql, "SELECT json FROM reservation WHERE k = 'r'", vec![])?;
        match rows.first() {
            Some(r) => Ok(Some(serde_json::from_str(&r.json)?)),
            None => Ok(None),
        }
    }

    fn save(&self, r: &Record) -> Result<(), Problem> {
        let sql = self.state.storage().sql();
        db::exec(
            &sql,
            "INSERT OR REPLACE INTO reservation (k, json) VALUES ('r', ?)",
            vec![text(&serde_json::to_string(r)?)],
        )
    }

    fn get(&self) -> Result<View, Problem> {
        match self.load()? {
            Some(r)
                if matches!(
                    r.status,
                    Status::Active | Status::Released | Status::Expired
                ) =>
            {
                Ok(view(&r, db::now_ms()))
            }
            _ => Err(Problem::not_found("no such reservation")),
        }
    }

    async fn release_all(&self, r: &Record, meta: &Meta) -> Vec<Result<Outcome, Problem>> {
        let hold = match r.hold_id() {
            Ok(h) => h,
            Err(p) => return vec![Err(p)],
        };
        join_all(r.lines.iter().map(|l| {
            send(
                &self.env,
                &l.sku,
                WireCommand::Release { hold: hold.clone() },
                meta,
            )
        }))
        .await
    }

    async fn create(&self, c: CreateRequest) -> Result<CreateAnswer, Problem> {
        let now = db::now_ms();
        let existing = self.load()?;
        let attempt = match &existing {
            Some(r) if r.status == Status::Failed => r.attempt + 1,
            Some(r) if r.fp != c.fp => {
                return Err(Problem::new(
                    409,
                    "idempotency_key_reused",
                    format!("reservation {} already exists with other content", r.id),
                ))
            }
            Some(r) if r.status == Status::Pending => r.attempt,
            Some(r) => {
                return Ok(CreateAnswer {
                    created: false,
                    reservation: view(r, now),
                })
            }
            None => 1,
        };
        let mut rec = Record {
            id: c.id.clone(),
            fp: c.fp.clone(),
            status: Status::Pending,
            attempt,
            lines: c.lines.clone(),
            ttl_ms: c.ttl_ms,
            channel: c.channel,
            expires_at: None,
            created_at: existing
                .as_ref()
                .filter(|r| r.status == Status::Pending)
                .map_or(now, |r| r.created_at),
            updated_at: now,
        };
        // Durable before any hold: a crash from here on is resumed by a retry.
        self.save(&rec)?;
        let hold = rec.hold_id()?;
        let meta = Meta {
            actor: c.actor.clone(),
            channel: Some(channel_name(c.channel).into()),
            reference: Some(format!("reservation:{}", c.id)),
            reason: None,
        };
        let outcomes = join_all(rec.lines.iter().map(|l| {
            send(
                &self.env,
                &l.sku,
                WireCommand::Hold {
                    hold: hold.clone(),
                    location: l.location.clone(),
                    qty: l.qty,
                    channel: c.channel,
                    ttl_ms: Some(c.ttl_ms),
                },
                &meta,
            )
        }))
        .await;

        let all_held = outcomes
            .iter()
            .all(|o| matches!(o, Ok(o) if o.ok && o.hold_active == Some(true)));
        if all_held {
            rec.expires_at = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok().and_then(|o| o.hold_expires_at))
                .min();
            rec.status = Status::Active;
            rec.updated_at = db::now_ms();
            self.save(&rec)?;
            return Ok(CreateAnswer {
                created: true,
                reservation: view(&rec, rec.updated_at),
            });
        }

        // All or none: give back whatever was held.
        let released = self.release_all(&rec, &meta).await;
        let release_failed = released.iter().any(|r| r.is_err());
        let mut short = Vec::new();
        let mut transport = None;
        let mut other = None;
        for (line, o) in rec.lines.iter().zip(&outcomes) {
            match o {
                Ok(o) if o.ok => {}
                Ok(o) => match &o.rejection {
                    Some(r) if r.kind == "insufficient_stock" => short.push(serde_json::json!({
                        "sku": line.sku,
                        "location": line.location,
                        "requested": line.qty,
                        "available": r.available.unwrap_or(0),
                    })),
                    Some(r) => other = Some(r.to_problem()),
                    None => {}
                },
                Err(p) => transport = Some(p.clone()),
            }
        }
        if release_failed {
            // Leave it pending: the holds expire on their own, and a retry resumes.
            return Err(transport.unwrap_or_else(|| {
                Problem::overloaded("could not release the partial holds; retry")
            }));
        }
        rec.status = Status::Failed;
        rec.updated_at = db::now_ms();
        self.save(&rec)?;
        if !short.is_empty() {
            return Err(Problem::new(
                409,
                "insufficient_stock",
                "not enough stock for every line; nothing was reserved",
            )
            .with("lines", short));
        }
        Err(transport.or(other).unwrap_or_else(|| {
            Problem::overloaded("a hold was not confirmed; nothing was reserved; retry")
        }))
    }

    async fn release(&self, actor: String) -> Result<View, Problem> {
        let now = db::now_ms();
        let Some(mut rec) = self.load()? else {
            return Err(Problem::not_found("no such reservation"));
        };
        let meta = Meta {
            actor,
            channel: Some(channel_name(rec.channel).into()),
            reference: Some(format!("reservation:{}", rec.id)),
            reason: Some("released".into()),
        };
        match rec.status_at(now) {
            Status::Released => Ok(view(&rec, now)),
            Status::Expired => Err(Problem::invalid_transition("expired", "released", &[])),
            Status::Failed => Err(Problem::not_found("no such reservation")),
            Status::Pending => {
                // A create that never finished: give back what it may hold.
                let r = self.release_all(&rec, &meta).await;
                if r.iter().all(|x| x.is_ok()) {
                    rec.status = Status::Failed;
                    self.save(&rec)?;
                }
                Err(Problem::not_found("no such reservation"))
            }
            Status::Active => {
                let results = self.release_all(&rec, &meta).await;
                if let Some(Err(p)) = results.iter().find(|r| r.is_err()) {
                    return Err(p.clone());
                }
                let expired = results.iter().any(|r| {
                    matches!(r, Ok(o) if o.rejection.as_ref().and_then(|x| x.resolution.as_deref()) == Some("expired"))
                });
                rec.status = if expired {
                    Status::Expired
                } else {
                    Status::Released
                };
                rec.updated_at = db::now_ms();
                self.save(&rec)?;
                if expired {
                    return Err(Problem::invalid_transition("expired", "released", &[]));
                }
                Ok(view(&rec, rec.updated_at))
            }
        }
    }

    async fn extend(&self, ttl_ms: i64, actor: String) -> Result<View, Problem> {
        let now = db::now_ms();
        let Some(mut rec) = self.load()? else {
            return Err(Problem::not_found("no such reservation"));
        };
        match rec.status_at(now) {
            Status::Active => {}
            Status::Pending | Status::Failed => {
                return Err(Problem::not_found("no such reservation"))
            }
            s => return Err(Problem::invalid_transition(s.as_str(), "active", &[])),
        }
        let hold = rec.hold_id()?;
        let meta = Meta {
            actor,
            channel: Some(channel_name(rec.channel).into()),
            reference: Some(format!("reservation:{}", rec.id)),
            reason: Some("extended".into()),
        };
        let results = join_all(rec.lines.iter().map(|l| {
            send(
                &self.env,
                &l.sku,
                WireCommand::Extend {
                    hold: hold.clone(),
                    ttl_ms,
                },
                &meta,
            )
        }))
        .await;
        if let Some(Err(p)) = results.iter().find(|r| r.is_err()) {
            // Some holds may be extended already: harmless, the reported
            // deadline stays the earlier one.
            return Err(p.clone());
        }
        if results.iter().all(|r| matches!(r, Ok(o) if o.ok)) {
            rec.expires_at = results
                .iter()
                .filter_map(|r| r.as_ref().ok().and_then(|o| o.hold_expires_at))
                .min();
            rec.ttl_ms = ttl_ms;
            rec.updated_at = db::now_ms();
            self.save(&rec)?;
            return Ok(view(&rec, rec.updated_at));
        }
        if let Some(p) = results.iter().find_map(|r| match r {
            Ok(o) => o
                .rejection
                .as_ref()
                .filter(|x| x.kind == "ttl_out_of_range")
                .map(|x| x.to_problem()),
            Err(_) => None,
        }) {
            return Err(p);
        }
        // A hold lapsed under us: the reservation has expired. Give the rest back.
        let _ = self.release_all(&rec, &meta).await;
        rec.status = Status::Expired;
        rec.updated_at = db::now_ms();
        self.save(&rec)?;
        Err(Problem::invalid_transition("expired", "active", &[]))
    }
}

pub fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Online => "online",
        Channel::Pos => "pos",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}
