//! Reports and accounting (issue 10): `GET /v1/reports/weekly` (JSON, or
//! CSV with `Accept: text/csv`), `POST /v1/reports/weekly/build`,
//! `GET /v1/accounting/export`, `GET|POST /v1/accounting/sync`. Admin keys
//! only. Figures come from core (`omnistock_core::report`) over the event
//! feed in D1 (`crate::reports`); every answer says how current it is.
use omnistock_core::report::accounting::{DayBook, Kind, Receipt};
use omnistock_core::report::weekly::WeeklyReport;
use omnistock_core::LocationId;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::extract::Ctx;
use crate::http::{rfc3339, HttpResult, Problem, Reply};
use crate::reports::{self, WeeklyAnswer};

fn location(ctx: &Ctx) -> Result<Option<LocationId>, Problem> {
    match ctx.query_one("location")? {
        Some(l) if !l.is_empty() => Ok(Some(
            LocationId::parse(&l).map_err(|e| Problem::invalid(format!("location: {e}")))?,
        )),
        _ => Ok(None),
    }
}

fn wants_csv(ctx: &Ctx) -> bool {
    ctx.accept
        .as_deref()
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv"))
}

/// `GET /v1/reports/weekly?week=2026-W48&location=`: the stored report of
/// that week when one was built, else computed now from the feed.
pub async fn weekly(ctx: &Ctx) -> HttpResult {
    let week = ctx
        .query_one("week")?
        .unwrap_or_else(|| reports::last_week(ctx.now));
    if omnistock_core::report::calendar::parse_week(&week).is_none() {
        return Err(Problem::invalid("week is an ISO week like 2026-W48"));
    }
    let location = location(ctx)?;
    let a = match reports::stored_weekly(&ctx.env, &week, location.as_ref()).await? {
        Some(mut a) => {
            a.freshness = reports::freshness(&ctx.env, a.freshness.truncated).await?;
            a
        }
        None => reports::build_weekly(&ctx.env, &week, location.as_ref(), ctx.now).await?,
    };
    if wants_csv(ctx) {
        return Ok(Reply::raw(200, "text/csv; charset=utf-8", weekly_csv(&a)));
    }
    Ok(Reply::json(200, &a))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    week: String,
    #[serde(default)]
    location: Option<String>,
}

/// `POST /v1/reports/weekly/build {week, location?}`: builds and stores the
/// week's report now (what the Monday Cron Trigger does for last week).
pub async fn build(ctx: &Ctx) -> HttpResult {
    let b: BuildBody = crate::http::parse_json(&ctx.body)?;
    let location = match b.location.as_deref() {
        Some(l) if !l.is_empty() => {
            Some(LocationId::parse(l).map_err(|e| Problem::invalid(format!("location: {e}")))?)
        }
        _ => None,
    };
    if omnistock_core::report::calendar::parse_week(&b.week).is_none() {
        return Err(Problem::invalid("week is an ISO week like 2026-W48"));
    }
    let idem = ctx.idem()?;
    keyed(ctx, &idem, async {
        let a = reports::store_weekly(&ctx.env, &b.week, location.as_ref(), ctx.now).await?;
        Ok(Reply::json(201, &a))
    })
    .await
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(out: &mut String, fields: &[String]) {
    let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

fn money_list(m: &[omnistock_core::report::weekly::Money2]) -> String {
    m.iter()
        .map(|m| format!("{} {}", m.amount, m.currency.as_str()))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn opt<T: ToString>(o: &Option<T>) -> String {
    o.as_ref().map(|x| x.to_string()).unwrap_or_default()
}

/// The report as one CSV table: `section,key,subkey,metric,value` rows (so
/// every figure has one row and the whole report parses back).
pub fn weekly_csv(a: &WeeklyAnswer) -> String {
    let r: &WeeklyReport = &a.report;
    let mut out = String::new();
    let mut row = |s: &str, k: &str, sub: &str, m: &str, v: String| {
        csv_row(&mut out, &[s.into(), k.into(), sub.into(), m.into(), v])
    };
    row("section", "key", "subkey", "metric", "value".into());
    row("week", &a.week, "", "as_of", opt(&a.freshness.as_of));
    row("week", &a.week, "", "location", opt(&a.location));
    row("total", "", "", "units_sold", r.units_sold.to_string());
    row("total", "", "", "revenue", money_list(&r.revenue));
    row("total", "", "", "on_hand_end", r.on_hand_end.to_string());
    row("total", "", "", "sell_through", opt(&r.sell_through));
    for t in &r.top_sellers {
        let k = t.sku.as_str();
        row("top_seller", k, "", "units", t.units.to_string());
        row("top_seller", k, "", "revenue", money_list(&t.revenue));
        row(
            "top_seller",
            k,
            "",
            "stockout_hours",
            t.stockout_hours.to_string(),
        );
    }
    for x in &r.returns {
        let k = x.sku.as_str();
        row("returns", k, "", "units_sold", x.units_sold.to_string());
        row(
            "returns",
            k,
            "",
            "units_returned",
            x.units_returned.to_string(),
        );
        row("returns", k, "", "return_rate", opt(&x.return_rate));
        for (reason, n) in &x.reasons {
            row("returns", k, reason, "units", n.to_string());
        }
    }
    for x in &r.adjustments {
        row("adjustments", &x.reason, "", "count", x.count.to_string());
        row(
            "adjustments",
            &x.reason,
            "",
            "units_in",
            x.units_in.to_string(),
        );
        row(
            "adjustments",
            &x.reason,
            "",
            "units_out",
            x.units_out.to_string(),
        );
        row("adjustments", &x.reason, "", "net", x.net.to_string());
    }
    for c in &r.channels {
        row(
            "channel",
            &c.channel,
            "",
            "units_sold",
            c.units_sold.to_string(),
        );
        row("channel", &c.channel, "", "revenue", money_list(&c.revenue));
        row(
            "channel",
            &c.channel,
            "",
            "sell_through",
            opt(&c.sell_through),
        );
    }
    for g in &r.aging {
        let (k, l) = (g.sku.as_str(), g.location.as_str());
        row("aging", k, l, "on_hand", g.on_hand.to_string());
        row("aging", k, l, "days_unsold", g.days_unsold.to_string());
        row("aging", k, l, "bucket", g.bucket.to_string());
    }
    for t in &r.aging_totals {
        let b = t.bucket.to_string();
        row("aging_total", &b, "", "units", t.units.to_string());
        row("aging_total", &b, "", "value", money_list(&t.value));
        row(
            "aging_total",
            &b,
            "",
            "units_unvalued",
            t.units_unvalued.to_string(),
        );
    }
    out
}

/// A decimal as a JSON number, written exactly (never through a float).
fn number(d: &omnistock_core::money::Decimal) -> Result<Box<RawValue>, Problem> {
    RawValue::from_string(d.normalize().to_string())
        .map_err(|_| Problem::overloaded("an amount did not render"))
}

/// One receipt as a QuickBooks Online API v3 `SalesReceipt` or
/// `RefundReceipt` entity. `ItemRef`, `PaymentMethodRef` and `TaxCodeRef`
/// carry omnistock's names (the SKU, the payment method, `TAX`/`NON`):
/// map them to the company's ids in QBO (Items named by SKU).
pub fn qbo_entity(r: &Receipt) -> Result<Value, Problem> {
    let mut lines = Vec::with_capacity(r.lines.len());
    for (i, l) in r.lines.iter().enumerate() {
        let tax_code = if l.tax.is_zero() { "NON" } else { "TAX" };
        lines.push(json!({
            "Id": (i + 1).to_string(),
            "LineNum": i + 1,
            "Description": l.sku.as_str(),
            "Amount": number(&l.amount)?,
            "DetailType": "SalesItemLineDetail",
            "SalesItemLineDetail": {
                "ItemRef": {"value": l.sku.as_str(), "name": l.sku.as_str()},
                "Qty": l.qty,
                "UnitPrice": number(&l.unit_price)?,
                "TaxCodeRef": {"value": tax_code},
            },
        }));
    }
    let mut e = json!({
        "DocNumber": r.doc_number,
        "TxnDate": r.txn_date,
        "PrivateNote": format!("omnistock {}", r.key),
        "CurrencyRef": {"value": r.currency.as_str()},
        "GlobalTaxCalculation": if r.tax_inclusive { "TaxInclusive" } else { "TaxExcluded" },
        "Line": lines,
        "TxnTaxDetail": {"TotalTax": number(&r.total_tax)?},
        "PaymentMethodRef": {"value": r.payment_method, "name": r.payment_method},
        "TotalAmt": number(&r.total)?,
    });
    if let Some(l) = &r.location {
        e["DepartmentRef"] = json!({"value": l.as_str(), "name": l.as_str()});
    }
    Ok(e)
}

pub fn qbo_kind(k: Kind) -> &'static str {
    match k {
        Kind::SalesReceipt => "SalesReceipt",
        Kind::RefundReceipt => "RefundReceipt",
    }
}

fn book_csv(b: &DayBook) -> String {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "type",
            "doc_number",
            "txn_date",
            "channel",
            "location",
            "payment_method",
            "sku",
            "qty",
            "unit_price",
            "amount",
            "tax",
            "currency",
        ]
        .map(String::from),
    );
    for r in &b.receipts {
        for l in &r.lines {
            csv_row(
                &mut out,
                &[
                    qbo_kind(r.kind).into(),
                    r.doc_number.clone(),
                    r.txn_date.clone(),
                    r.channel.clone(),
                    opt(&r.location),
                    r.payment_method.clone(),
                    l.sku.to_string(),
                    l.qty.to_string(),
                    l.unit_price.to_string(),
                    l.amount.to_string(),
                    l.tax.to_string(),
                    r.currency.as_str().into(),
                ],
            );
        }
    }
    out
}

/// `GET /v1/accounting/export?date=YYYY-MM-DD&format=qbo|csv`.
pub async fn export(ctx: &Ctx) -> HttpResult {
    let date = ctx
        .query_one("date")?
        .ok_or_else(|| Problem::invalid("date is required (YYYY-MM-DD)"))?;
    let format = ctx.query_one("format")?.unwrap_or_else(|| "qbo".into());
    if format != "qbo" && format != "csv" {
        return Err(Problem::invalid("format is qbo or csv"));
    }
    let (book, fresh) = reports::day(&ctx.env, &date).await?;
    if format == "csv" {
        return Ok(Reply::raw(200, "text/csv; charset=utf-8", book_csv(&book)));
    }
    let mut sales = Vec::new();
    let mut refunds = Vec::new();
    for r in &book.receipts {
        let e = qbo_entity(r)?;
        match r.kind {
            Kind::SalesReceipt => sales.push(e),
            Kind::RefundReceipt => refunds.push(e),
        }
    }
    Ok(Reply::json(
        200,
        &json!({
            "date": book.date,
            "as_of": fresh.as_of,
            "sources": fresh.sources,
            "sources_behind": fresh.sources_behind,
            "truncated": fresh.truncated,
            "generated_at": rfc3339(ctx.now),
            "SalesReceipt": sales,
            "RefundReceipt": refunds,
            "totals": book.totals,
            "rounding": "amounts exact (qty x unit price); line tax as priced; refunds spread over lines in proportion to what was paid, half away from zero to the minor unit, the last line takes the remainder",
        }),
    ))
}

/// `GET /v1/accounting/sync?date=`: what the QBO sync booked, rejected or
/// left to retry (that day's receipts, or the latest 500).
pub async fn sync_status(ctx: &Ctx) -> HttpResult {
    let date = ctx.query_one("date")?;
    if let Some(d) = &date {
        if omnistock_core::report::calendar::parse_date(d).is_none() {
            return Err(Problem::invalid("date is a day like 2026-11-24"));
        }
    }
    Ok(Reply::json(
        200,
        &crate::qbo::status(&ctx.env, date.as_deref()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    date: String,
}

/// `POST /v1/accounting/sync {date}`: runs the QBO sync of that day now
/// (what the daily Cron Trigger does for yesterday). Safe to repeat: what
/// synced is skipped, and QBO's requestid stops a double booking.
pub async fn sync_now(ctx: &Ctx) -> HttpResult {
    let idem = ctx.idem()?;
    let b: SyncBody = crate::http::parse_json(&ctx.body)?;
    if omnistock_core::report::calendar::parse_date(&b.date).is_none() {
        return Err(Problem::invalid("date is a day like 2026-11-24"));
    }
    keyed(ctx, &idem, async {
        let s = crate::qbo::sync(&ctx.env, &b.date, ctx.now).await?;
        Ok(Reply::json(200, &s))
    })
    .await
}

/// Runs a write once per Idempotency-Key: the same key and body replay the
/// first answer (`Idempotent-Replayed: true`), another body is 409. The
/// answer is kept in D1 (`report_keys`, 48 h).
async fn keyed(
    ctx: &Ctx,
    idem: &crate::wire::Idem,
    f: impl std::future::Future<Output = HttpResult>,
) -> HttpResult {
    #[derive(Deserialize)]
    struct K {
        fp: String,
        status: f64,
        body: String,
    }
    let db = reports::db(&ctx.env)?;
    let k: Option<K> = db
        .prepare("SELECT fp, status, body FROM report_keys WHERE key = ?1")
        .bind(&[wasm_bindgen::JsValue::from_str(&idem.key)])
        .map_err(reports::d1_error("prepare a key read"))?
        .first(None)
        .await
        .map_err(reports::d1_error("read a key"))?;
    if let Some(k) = k {
        if k.fp != idem.fp {
            return Err(Problem::key_reused());
        }
        return Ok(Reply::raw(k.status as u16, "application/json", k.body)
            .header("Idempotent-Replayed", "true"));
    }
    let r = f.await?;
    db.prepare(
        "INSERT OR IGNORE INTO report_keys (key, fp, status, body, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&[
        wasm_bindgen::JsValue::from_str(&idem.key),
        wasm_bindgen::JsValue::from_str(&idem.fp),
        reports::num(i64::from(r.status)),
        wasm_bindgen::JsValue::from_str(&r.body),
        reports::num(ctx.now),
    ])
    .map_err(reports::d1_error("prepare a key write"))?
    .run()
    .await
    .map_err(reports::d1_error("keep a key"))?;
    // Keys older than 48 h go, a few at a time.
    let _ = db
        .prepare(
            "DELETE FROM report_keys WHERE key IN
             (SELECT key FROM report_keys WHERE at < ?1 ORDER BY at LIMIT 100)",
        )
        .bind(&[reports::num(ctx.now - 48 * 3_600_000)])
        .map_err(reports::d1_error("prepare a key prune"))?
        .run()
        .await;
    Ok(r)
}
