//! Customers and loyalty (issue 10): `PUT /v1/customers/{id}`,
//! `GET /v1/customers/{id}`, `GET /v1/customers?email=|phone=`,
//! `POST /v1/customers/{id}/loyalty/redeem`, `POST /v1/customers/{id}/erase`.
//! Each write or read by id is one call to the customer's own object; a
//! lookup is one D1 query of the index the objects keep (`customer_index`).
use omnistock_core::customer::{normalize_email, normalize_phone, MAX_POINTS};
use serde::Deserialize;
use serde_json::json;

use crate::customer_index;
use crate::extract::Ctx;
use crate::http::{check_id, parse_json, rfc3339, HttpResult, Problem, Reply};
use crate::objects::customer::problem;
use crate::wire::customer::{self, call, CustomerAnswer, CustomerOp};

/// Longest email or phone accepted in a body or a query.
pub const MAX_CONTACT_LEN: usize = 254;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemBody {
    points: i64,
    /// The sale or order the points pay for (an id).
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn reply(a: CustomerAnswer) -> HttpResult {
    let r = Reply::json(a.status, &a.body);
    Ok(if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    })
}

/// `PUT /v1/customers/{id}` `{name, email?, phone?}`
pub async fn put(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("customer")?;
    let b: PutBody = parse_json(&ctx.body)?;
    // The object normalises again with the same rules; this is the 400 early.
    let cfg = customer::config(&ctx.env)?;
    omnistock_core::customer::Profile::parse(&b.name, b.email.as_deref(), b.phone.as_deref(), &cfg)
        .map_err(|e| problem(&e))?;
    let op = CustomerOp::Put {
        name: b.name,
        email: b.email,
        phone: b.phone,
        idem: ctx.idem()?,
    };
    reply(call(&ctx.env, &id, op).await?)
}

/// `GET /v1/customers/{id}`
pub async fn get(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("customer")?;
    reply(call(&ctx.env, &id, CustomerOp::Get).await?)
}

/// `GET /v1/customers?email=` or `?phone=` (exactly one; matched after
/// normalising, like a profile's).
pub async fn lookup(ctx: &Ctx) -> HttpResult {
    for (k, _) in &ctx.query {
        if k != "email" && k != "phone" {
            return Err(Problem::invalid(format!(
                "unknown parameter {k:?}: use email or phone"
            )));
        }
    }
    let email = ctx.query_one("email")?;
    let phone = ctx.query_one("phone")?;
    let (field, value) = match (email, phone) {
        (Some(e), None) if e.len() <= MAX_CONTACT_LEN => {
            ("email", normalize_email(&e).map_err(|e| problem(&e))?)
        }
        (None, Some(p)) if p.len() <= MAX_CONTACT_LEN => {
            // An unencoded `+` in a query reads as a space: `?phone=+33...`.
            let p = match p.strip_prefix(' ') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => format!("+{rest}"),
                _ => p,
            };
            let cfg = customer::config(&ctx.env)?;
            let n = normalize_phone(&p, &cfg.phone_country_code).map_err(|e| problem(&e))?;
            ("phone", n)
        }
        _ => {
            return Err(Problem::invalid(format!(
                "give exactly one of email or phone (at most {MAX_CONTACT_LEN} characters)"
            )))
        }
    };
    let found = customer_index::find(&ctx.env, field, &value).await?;
    let customers: Vec<serde_json::Value> = found
        .iter()
        .map(|f| {
            json!({
                "id": f.id, "name": f.name, "email": f.email_norm, "phone": f.phone_norm,
                "version": f.version as u64, "updated_at": rfc3339(f.updated_at as i64),
            })
        })
        .collect();
    Ok(Reply::json(
        200,
        &json!({"as_of": rfc3339(ctx.now), field: value, "customers": customers}),
    ))
}

/// `POST /v1/customers/{id}/loyalty/redeem` `{points, reference?}`
pub async fn redeem(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("customer")?;
    let b: RedeemBody = parse_json(&ctx.body)?;
    if !(1..=MAX_POINTS).contains(&b.points) {
        return Err(Problem::invalid(format!(
            "points must be a whole number from 1 to {MAX_POINTS}"
        )));
    }
    if let Some(r) = &b.reference {
        check_id(r, "reference")?;
    }
    let op = CustomerOp::Redeem {
        points: b.points,
        reference: b.reference,
        idem: ctx.idem()?,
    };
    reply(call(&ctx.env, &id, op).await?)
}

/// `POST /v1/customers/{id}/erase` (`{}` or no body): the profile is
/// removed for good; purchases, returns and points stay, anonymous.
pub async fn erase(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("customer")?;
    if !ctx.body.is_empty() {
        let _: Empty = parse_json(&ctx.body)?;
    }
    let op = CustomerOp::Erase { idem: ctx.idem()? };
    reply(call(&ctx.env, &id, op).await?)
}
