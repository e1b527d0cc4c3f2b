//! Messages to a `SkuStock` object (one per SKU, the only writer of its stock).
use omnistock_core::{Command, Event, HoldId, LocationId, Position, Rejection, SaleId, Sku};
use serde::{Deserialize, Serialize};

use worker::Env;

use super::reservation::{CreateRequest, ReservationAnswer};
use super::{Idem, Namespace};
use crate::http::Problem;

/// Sends one message to the SKU object of `sku`.
pub async fn call<A: serde::de::DeserializeOwned>(
    env: &Env,
    sku: &Sku,
    req: &SkuRequest,
) -> Result<A, Problem> {
    super::call(env, Namespace::SkuStock, sku.as_str(), req).await
}

/// Reads the positions of one SKU at the given locations (none given: at
/// every location it has a position).
pub async fn read(env: &Env, sku: &Sku, locations: &[LocationId]) -> Result<ReadAnswer, Problem> {
    call(
        env,
        sku,
        &SkuRequest::Read(ReadRequest {
            locations: (!locations.is_empty()).then(|| locations.to_vec()),
        }),
    )
    .await
}

/// Runs commands on one SKU object; one outcome per command, in order.
pub async fn exec(
    env: &Env,
    sku: &Sku,
    cmds: Vec<Command>,
    meta: &Meta,
    idem: Option<Idem>,
) -> Result<Vec<Outcome>, Problem> {
    exec_as(env, sku, SkuRequest::Exec, cmds, meta, idem).await
}

/// Runs commands on one SKU object, all or none (see [`SkuRequest::ExecAll`]).
pub async fn exec_all(
    env: &Env,
    sku: &Sku,
    cmds: Vec<Command>,
    meta: &Meta,
    idem: Option<Idem>,
) -> Result<Vec<Outcome>, Problem> {
    exec_as(env, sku, SkuRequest::ExecAll, cmds, meta, idem).await
}

/// Runs one POS sale's `Sell` on its SKU object, with the sale's event for
/// the feed (see [`ExecRequest::sale_event`]).
pub async fn sell(
    env: &Env,
    sku: &Sku,
    cmd: Command,
    meta: &Meta,
    sale_event: Option<SaleEvent>,
) -> Result<Outcome, Problem> {
    let req = SkuRequest::Exec(ExecRequest {
        cmds: vec![cmd],
        meta: meta.clone(),
        idem: None,
        sale_event,
    });
    let mut out: Vec<Outcome> = call(env, sku, &req).await?;
    match (out.pop(), out.is_empty()) {
        (Some(o), true) => Ok(o),
        _ => Err(Problem::overloaded(
            "a SKU object answered the wrong number of results",
        )),
    }
}

async fn exec_as(
    env: &Env,
    sku: &Sku,
    kind: fn(ExecRequest) -> SkuRequest,
    cmds: Vec<Command>,
    meta: &Meta,
    idem: Option<Idem>,
) -> Result<Vec<Outcome>, Problem> {
    let n = cmds.len();
    let req = kind(ExecRequest {
        cmds,
        meta: meta.clone(),
        idem,
        sale_event: None,
    });
    let out: Vec<Outcome> = call(env, sku, &req).await?;
    if out.len() != n {
        return Err(Problem::overloaded(
            "a SKU object answered the wrong number of results",
        ));
    }
    Ok(out)
}

/// Everything a `SkuStock` object is asked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SkuRequest {
    /// Stock commands, in order (receipts, adjustments, counts, holds of a
    /// coordinator, sales of a terminal).
    Exec(ExecRequest),
    /// Stock commands, in order, all or none: if any is refused, nothing is
    /// written and the first refusal is the answer (an error). Used where
    /// one request is several commands of one SKU (a move between
    /// unavailable buckets, a write-off).
    ExecAll(ExecRequest),
    /// Positions now.
    Read(ReadRequest),
    /// The event log.
    Ledger(LedgerRequest),
    /// A reservation of this SKU alone (one line), homed here: one call, one transaction.
    Reserve(CreateRequest),
    /// A reservation homed here: read, release or extend it.
    Reservation(ReservationOp),
    /// A coordinator's question about one of its holds (`Hold`, `Extend` or
    /// `Release`), answered with core's `HoldReply`.
    Coordinate { cmd: Command, meta: Meta },
    /// A transfer coordinator's command (`TransferShip`, `TransferReceive`
    /// or `TransferCancel`), answered with core's `TransferReply`.
    Transfer { cmd: Command, meta: Meta },
    /// The terminal that sold `sale` here, from the sale's answer row (kept
    /// forever): how a return that names only a sale finds its terminal.
    SaleTerminal { sale: SaleId },
    /// A live hub (`objects/live_hub.rs`) relays this SKU's changes to its
    /// multi-SKU sockets from now on: registered (once), answered with the
    /// positions now (a `ReadAnswer`, every location) for its snapshots.
    LiveHub { hub: String, sku: Sku },
}

/// The key under which a command's first answer is kept (commands with a client id).
pub fn answer_key(cmd: &Command) -> Option<String> {
    match cmd {
        Command::Receive { op, .. }
        | Command::Adjust { op, .. }
        | Command::SetSafetyStock { op, .. }
        | Command::Count { op, .. }
        | Command::MarkUnavailable { op, .. }
        | Command::ReturnReceive { op, .. }
        | Command::TransferReceive { op, .. } => Some(format!("op:{op}")),
        Command::Hold { hold, .. } => Some(format!("hold:{hold}")),
        Command::Sell { sale, .. } => Some(sale_key(sale)),
        Command::TransferShip { transfer, .. } => Some(format!("transfer:{transfer}")),
        _ => None,
    }
}

/// The hold a command is about, if it is a hold command.
pub fn command_hold(cmd: &Command) -> Option<&HoldId> {
    match cmd {
        Command::Hold { hold, .. }
        | Command::Extend { hold, .. }
        | Command::Release { hold }
        | Command::Commit { hold }
        | Command::Keep { hold }
        | Command::Fulfill { hold } => Some(hold),
        _ => None,
    }
}

/// The location a command names, if it names one.
pub fn command_location(cmd: &Command) -> Option<&LocationId> {
    match cmd {
        Command::Receive { location, .. }
        | Command::Adjust { location, .. }
        | Command::SetSafetyStock { location, .. }
        | Command::Count { location, .. }
        | Command::MarkUnavailable { location, .. }
        | Command::Hold { location, .. }
        | Command::Sell { location, .. }
        | Command::ReturnReceive { location, .. } => Some(location),
        Command::TransferShip { from, .. } => Some(from),
        _ => None,
    }
}

/// The `ops` key of a sale: kept forever (sale ids are idempotent forever).
pub fn sale_key(sale: &SaleId) -> String {
    format!("sale:{sale}")
}

/// The location an event is filed under in the ledger (a transfer's is its destination).
pub fn event_location(e: &Event) -> Option<&LocationId> {
    match e {
        Event::Received { location, .. }
        | Event::Adjusted { location, .. }
        | Event::Counted { location, .. }
        | Event::MarkedUnavailable { location, .. }
        | Event::SafetyStockSet { location, .. }
        | Event::Held { location, .. }
        | Event::Released { location, .. }
        | Event::Expired { location, .. }
        | Event::Kept { location, .. }
        | Event::Committed { location, .. }
        | Event::Fulfilled { location, .. }
        | Event::Sold { location, .. }
        | Event::ReturnReceived { location, .. }
        | Event::TransferReceived { location, .. } => Some(location),
        Event::TransferShipped { to, .. } => Some(to),
        Event::Extended { .. } | Event::TransferCancelled { .. } => None,
    }
}

/// The units an event moved, as the ledger shows them (`qty`, or an
/// adjustment's or unavailable move's `delta`; a count's `counted`).
pub fn event_qty(e: &Event) -> Option<i64> {
    match e {
        Event::Received { qty, .. }
        | Event::SafetyStockSet { qty, .. }
        | Event::Held { qty, .. }
        | Event::Released { qty, .. }
        | Event::Expired { qty, .. }
        | Event::Kept { qty, .. }
        | Event::Committed { qty, .. }
        | Event::Fulfilled { qty, .. }
        | Event::Sold { qty, .. }
        | Event::ReturnReceived { qty, .. }
        | Event::TransferShipped { qty, .. }
        | Event::TransferReceived { qty, .. } => Some(*qty),
        Event::Adjusted { delta, .. } | Event::MarkedUnavailable { delta, .. } => Some(*delta),
        Event::Counted { .. } | Event::Extended { .. } | Event::TransferCancelled { .. } => None,
    }
}

/// Who did it, for the ledger.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub actor: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    pub cmds: Vec<Command>,
    pub meta: Meta,
    /// The request's Idempotency-Key, kept with each answer.
    #[serde(default)]
    pub idem: Option<Idem>,
    /// A POS sale's event for the event feed (`feed::sale_event`), written
    /// into this object's outbox in the transaction of that sale's `Sell`
    /// when the sale is new here (its outcome says `fed`): the event goes out
    /// with this SKU's own, not from the terminal's outbox in a D1 batch of
    /// its own. An object of the version before ignores it (then `fed` is
    /// false and the terminal writes the event itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_event: Option<SaleEvent>,
}

/// A POS sale's event for the feed, as the terminal built it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleEvent {
    /// The sale whose `Sell` carries it.
    pub sale: SaleId,
    /// The outbox row: the sale's time, location and `SaleBody` JSON.
    pub at: i64,
    pub location: String,
    pub body: String,
}

/// The problem the API answers for a core refusal (core's code; the status
/// that code means; a version conflict's versions).
pub fn rejection_problem(r: &Rejection) -> Problem {
    let code = r.code();
    let status = match r {
        Rejection::HoldNotFound | Rejection::TransferNotFound | Rejection::SaleNotFound => 404,
        Rejection::TooManyLocations | Rejection::TooManyHolds | Rejection::TooManyTransfers => 503,
        _ if code == "invalid_request" => 400,
        _ => 409,
    };
    let mut problem = Problem::new(status, code, r.to_string());
    if let Rejection::VersionConflict { expected, actual } = r {
        problem = problem
            .with("expected_version", expected)
            .with("version", actual);
    }
    problem
}

/// What one command did. Stored whole as the command's answer, so a retry
/// gets exactly the first answer (the position as it was then).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// True when the command had already been applied: this is the first answer.
    #[serde(default)]
    pub replayed: bool,
    /// The events, or why it was refused.
    pub result: Result<Vec<Event>, Problem>,
    /// The position the command touched, after it.
    #[serde(default)]
    pub location: Option<LocationId>,
    #[serde(default)]
    pub position: Option<Position>,
    /// A new sale whose [`SaleEvent`] this object wrote into its feed with
    /// it (kept in the stored answer, so a replay says so too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fed: bool,
}

impl Outcome {
    pub fn events(&self) -> &[Event] {
        match &self.result {
            Ok(e) => e,
            Err(_) => &[],
        }
    }
    /// Why the command was refused, if it was.
    pub fn problem(&self) -> Option<Problem> {
        self.result.as_ref().err().cloned()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadRequest {
    /// Only these locations; `None` for every location with a position.
    #[serde(default)]
    pub locations: Option<Vec<LocationId>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadAnswer {
    pub now: i64,
    pub positions: Vec<(LocationId, Position)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LedgerRequest {
    #[serde(default)]
    pub location: Option<LocationId>,
    /// Only entries with a sequence number above this.
    #[serde(default)]
    pub after: Option<i64>,
    pub limit: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub location: Option<String>,
    pub json: String,
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub reference: Option<String>,
    pub reason: Option<String>,
}

/// An operation on a reservation homed in this SKU object.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReservationOp {
    Get {
        id: String,
    },
    Release {
        id: String,
        meta: Meta,
        idem: Idem,
    },
    Extend {
        id: String,
        ttl_ms: i64,
        meta: Meta,
        idem: Idem,
    },
    /// The id turned out to belong to another reservation (its pointer
    /// refused this one): release this attempt's hold and record it as
    /// failed with `problem`, so the same request replays that refusal.
    Abandon {
        id: String,
        fp: String,
        problem: Problem,
    },
    /// Its hold becomes order `order_id`'s (idempotent for the same order).
    Convert {
        id: String,
        order_id: String,
    },
}

/// The answer of `Reserve` and `Reservation`: the reservation, or that it
/// is not homed here.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "home", rename_all = "snake_case")]
pub enum HomedAnswer {
    Here(ReservationAnswer),
    NotHere,
    /// Converted: the reservation and its hold id.
    Converted {
        answer: ReservationAnswer,
        hold: HoldId,
    },
}

/// The reservation a hold belongs to, if it is one (`res.<attempt>.<id>`),
/// as the API lists holds at risk.
pub fn hold_owner(h: &HoldId) -> serde_json::Value {
    let s = h.as_str();
    if let Some(rest) = s.strip_prefix("res.") {
        if let Some((_, id)) = rest.split_once('.') {
            return serde_json::json!({"hold": s, "reservation": id});
        }
    }
    if let Some((order, _)) = omnistock_core::order::parse_order_hold(h) {
        return serde_json::json!({"hold": s, "order": order.as_str()});
    }
    serde_json::json!({ "hold": s })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sell() -> Command {
        serde_json::from_value(serde_json::json!({
            "type": "sell", "sale": "s-1", "terminal": "t-1", "device_seq": 1,
            "location": "store-1", "qty": 1, "occurred_at": 1_700_000_000_000i64,
        }))
        .unwrap()
    }

    /// Deploy skew both ways: a SKU object of the version before ignores the
    /// sale's event (it never says `fed`, so the terminal writes the event
    /// itself), and a terminal of the version before sends none.
    #[test]
    fn the_sale_event_is_optional_on_both_sides() {
        let meta = Meta {
            actor: "pos".into(),
            channel: Some("pos".into()),
            reference: None,
            reason: None,
        };
        let with = ExecRequest {
            cmds: vec![sell()],
            meta: meta.clone(),
            idem: None,
            sale_event: Some(SaleEvent {
                sale: SaleId::parse("s-1").unwrap(),
                at: 1,
                location: "store-1".into(),
                body: "{}".into(),
            }),
        };
        // What an object of the version before reads of it.
        #[derive(Deserialize)]
        struct Before {
            cmds: Vec<Command>,
            #[allow(dead_code)]
            meta: Meta,
        }
        let text = serde_json::to_string(&with).unwrap();
        assert_eq!(serde_json::from_str::<Before>(&text).unwrap().cmds.len(), 1);
        // What this version reads of a request without it.
        let without = ExecRequest {
            sale_event: None,
            ..with
        };
        let text = serde_json::to_string(&without).unwrap();
        assert!(!text.contains("sale_event"), "{text}");
        assert!(serde_json::from_str::<ExecRequest>(&text)
            .unwrap()
            .sale_event
            .is_none());
        // An answer of the version before: not fed. And an answer not fed
        // is stored in the form it had before.
        let old = r#"{"replayed":false,"result":{"Ok":[]},"location":null,"position":null}"#;
        let o: Outcome = serde_json::from_str(old).unwrap();
        assert!(!o.fed);
        assert!(!serde_json::to_string(&o).unwrap().contains("fed"));
        let fed = Outcome { fed: true, ..o };
        let back: Outcome = serde_json::from_str(&serde_json::to_string(&fed).unwrap()).unwrap();
        assert!(back.fed);
    }
}
