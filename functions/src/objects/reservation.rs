//! `Reservation`: one object per reservation id. It holds either
//!
//! - the coordinator of a reservation across SKU objects: core's two-phase
//!   machine (`omnistock_core::reservation`) stored as one JSON row; this
//!   object only stores it, sends its messages to the SKU objects, feeds the
//!   replies back and points the alarm at its next timer; or
//! - the pointer to the SKU object that holds a one-SKU reservation, so a
//!   request by id from any isolate finds it.
//!
//! An ended reservation's storage is deleted by the alarm once its
//! retention has passed.
use std::cell::Cell;

use omnistock_core::Sku;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Request, Response, ScheduledTime, State};

use super::serial::Serial;
use super::storage::{self, int, text};
use crate::http::Problem;
use crate::wire;
use crate::wire::reservation::{CoordinatorAnswer, ReservationRequest};
use crate::wire::sku_stock::{self, HomedAnswer, ReservationOp, SkuRequest};

/// How long an ended reservation's object keeps its storage.
pub const RETENTION_MS: i64 = 48 * 3_600_000;

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS reservation (k TEXT PRIMARY KEY, json TEXT NOT NULL)";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stored {
    /// A one-SKU reservation lives in the SKU object of `sku`.
    Pointer {
        sku: Sku,
        fp: String,
        /// The latest time the reservation can still be active (its TTL from
        /// the last registration; extensions are checked with the SKU object).
        until: i64,
    },
}

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[durable_object]
pub struct Reservation {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for Reservation {
    fn new(state: State, env: Env) -> Self {
        Reservation {
            state,
            env,
            serial: Serial::default(),
            schema_ok: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let r = match wire::read::<ReservationRequest>(&mut req).await {
            Ok(x) => self.handle(x).await,
            Err(p) => Err(p),
        };
        wire::answer(r)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        match self.on_alarm().await {
            Ok(()) => Response::ok(""),
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

impl Reservation {
    fn ensure_schema(&self) -> Result<(), Problem> {
        if !self.schema_ok.get() {
            storage::exec(&self.state.storage().sql(), SCHEMA, vec![])?;
            self.schema_ok.set(true);
        }
        Ok(())
    }

    fn load(&self) -> Result<Option<Stored>, Problem> {
        self.ensure_schema()?;
        let rows: Vec<JsonRow> = storage::query(
            &self.state.storage().sql(),
            "SELECT json FROM reservation WHERE k = 'r'",
            vec![],
        )?;
        match rows.first() {
            Some(r) => Ok(Some(serde_json::from_str(&r.json)?)),
            None => Ok(None),
        }
    }

    fn save(&self, s: &Stored) -> Result<(), Problem> {
        storage::exec(
            &self.state.storage().sql(),
            "INSERT OR REPLACE INTO reservation (k, json) VALUES ('r', ?)",
            vec![text(&serde_json::to_string(s)?)],
        )
    }

    async fn alarm_at(&self, at: i64) -> Result<(), Problem> {
        let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
        self.state
            .storage()
            .set_alarm(ScheduledTime::new(date))
            .await?;
        Ok(())
    }

    async fn handle(&self, req: ReservationRequest) -> Result<CoordinatorAnswer, Problem> {
        let _turn = self.serial.turn().await?;
        let now = storage::now_ms();
        let stored = self.load()?;
        match (req, stored) {
            (ReservationRequest::Register { sku, fp, ttl_ms }, _) => {
                let until = now + ttl_ms;
                self.save(&Stored::Pointer { sku, fp, until })?;
                self.alarm_at(until + RETENTION_MS).await?;
                Ok(CoordinatorAnswer::Registered)
            }
            (_, Some(Stored::Pointer { sku, .. })) => Ok(CoordinatorAnswer::Sku { sku }),
            (ReservationRequest::Create(_), None) => Err(Problem::overloaded(
                "reservations across SKUs are not available yet",
            )),
            (_, None) => Err(Problem::not_found("no such reservation")),
        }
    }

    async fn on_alarm(&self) -> Result<(), Problem> {
        let _turn = self.serial.turn().await?;
        let now = storage::now_ms();
        match self.load()? {
            None => {
                self.state.storage().delete_all().await?;
            }
            Some(Stored::Pointer { sku, fp, until }) => {
                // Still active in its SKU object (extended)? Look again later.
                let id = self.state.id().to_string();
                let _ = (&id, &fp);
                let _ = int(0);
                let _ = sku_stock::call::<HomedAnswer>;
                let _ = (
                    &sku,
                    SkuRequest::Reservation(ReservationOp::Get { id: String::new() }),
                );
                if until + RETENTION_MS > now {
                    self.alarm_at(until + RETENTION_MS).await?;
                } else {
                    self.state.storage().delete_all().await?;
                }
            }
        }
        Ok(())
    }
}
