//! HTTP plumbing: problem+json errors, replies, JSON bodies, query strings
//! and RFC 3339 times.
//!
//! Every failure is a [`Problem`]. A `worker::Error` converts into a 503
//! `overloaded` problem (never a bare 500), so `?` on any storage or stub call
//! is always safe.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use worker::{Headers, Response};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most lines in one request.
pub use omnistock_core::fulfillment::MAX_LINES;
/// Most SKUs in one availability read.
pub const MAX_SKUS: usize = 100;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem. `code` is one of the codes of API.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub detail: String,
    /// Extra members (`lines`, `from`, `to`, `allowed`...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// A stored answer given again for the same Idempotency-Key (not part of the body).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

impl Problem {
    pub fn new(status: u16, code: &str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code: code.to_string(),
            detail: detail.into(),
            extra: Map::new(),
            replayed: false,
        }
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not_found", detail)
    }
    pub fn too_large() -> Self {
        Self::too_large_than(MAX_BODY_BYTES)
    }
    pub fn too_large_than(max: usize) -> Self {
        Self::new(
            413,
            "payload_too_large",
            format!("the body is larger than {max} bytes"),
        )
    }
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self::new(503, "overloaded", detail)
    }
    pub fn key_reused() -> Self {
        Self::new(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        )
    }
    /// A refusal of a reused Idempotency-Key (or id) with other content.
    pub fn is_key_reused(&self) -> bool {
        self.code == "idempotency_key_reused"
    }
    pub fn invalid_transition(from: &str, to: &str, allowed: &[&str]) -> Self {
        Self::new(
            409,
            "invalid_transition",
            format!("cannot go from {from} to {to}"),
        )
        .with("from", from)
        .with("to", to)
        .with("allowed", allowed)
    }
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extra.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    pub fn title(&self) -> &'static str {
        match self.code.as_str() {
            "invalid_request" => "Invalid request",
            "unauthorized" => "Unauthorized",
            "forbidden" => "Forbidden",
            "not_found" => "Not found",
            "method_not_allowed" => "Method not allowed",
            "insufficient_stock" => "Insufficient stock",
            "invalid_transition" => "Invalid transition",
            "idempotency_key_reused" => "Idempotency key reused",
            "version_conflict" => "Version conflict",
            "insufficient_points" => "Insufficient points",
            "contact_taken" => "Contact taken",
            "payload_too_large" => "Payload too large",
            "rate_limited" => "Rate limited",
            "overloaded" => "Overloaded",
            _ => "Error",
        }
    }

    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "type".into(),
            Value::String(format!("urn:omnistock:problem:{}", self.code)),
        );
        m.insert("title".into(), Value::String(self.title().into()));
        m.insert("status".into(), Value::from(self.status));
        m.insert("detail".into(), Value::String(self.detail.clone()));
        m.insert("code".into(), Value::String(self.code.clone()));
        for (k, v) in &self.extra {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(m)
    }
}

impl From<worker::Error> for Problem {
    fn from(e: worker::Error) -> Self {
        // Never echo a key: worker errors carry no request headers, but keep
        // the detail generic for clients and log the cause.
        worker::console_error!("storage or runtime error: {e}");
        Problem::overloaded(
            "a storage or runtime error occurred; retry with the same Idempotency-Key",
        )
    }
}

impl From<serde_json::Error> for Problem {
    fn from(e: serde_json::Error) -> Self {
        worker::console_error!("internal JSON error: {e}");
        Problem::overloaded("an internal encoding error occurred; retry")
    }
}

/// A bundle refused by core: 400 with core's reason.
impl From<omnistock_core::bundle::BundleError> for Problem {
    fn from(e: omnistock_core::bundle::BundleError) -> Self {
        Problem::invalid(e.to_string())
    }
}

/// Checks an id given by the client (core's id rules); `what` prefixes the reason.
pub fn check_id(raw: &str, what: &str) -> Result<(), Problem> {
    omnistock_core::ids::validate_id(raw).map_err(|e| Problem::invalid(format!("{what}: {e}")))
}

pub type HttpResult = Result<Reply, Problem>;

/// A response before it becomes a `worker::Response`: status, content type
/// and body bytes, so it can be stored for idempotent replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, v: &impl Serialize) -> Reply {
        Reply {
            status,
            content_type: "application/json".into(),
            body: serde_json::to_string(v).unwrap_or_else(|_| "null".into()),
            headers: Vec::new(),
        }
    }
    pub fn raw(status: u16, content_type: &str, body: String) -> Reply {
        Reply {
            status,
            content_type: content_type.into(),
            body,
            headers: Vec::new(),
        }
    }
    pub fn problem(p: &Problem) -> Reply {
        let mut r = Reply {
            status: p.status,
            content_type: PROBLEM_JSON.into(),
            body: p.body().to_string(),
            headers: Vec::new(),
        };
        if p.status == 401 {
            r.headers.push((
                "WWW-Authenticate".into(),
                "Bearer realm=\"omnistock\"".into(),
            ));
        }
        if p.status == 503 {
            r.headers.push(("Retry-After".into(), "1".into()));
        }
        if let (429, Some(Value::Number(n))) = (p.status, p.extra.get("retry_after")) {
            r.headers.push(("Retry-After".into(), n.to_string()));
        }
        if p.replayed {
            r.headers
                .push(("Idempotent-Replayed".into(), "true".into()));
        }
        if p.status == 405 {
            if let Some(Value::String(allow)) = p.extra.get("allow") {
                r.headers.push(("Allow".into(), allow.clone()));
            }
        }
        r
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn into_response(self) -> Response {
        let headers = Headers::new();
        let _ = headers.set("Content-Type", &self.content_type);
        let _ = headers.set("Cache-Control", "no-store");
        let _ = headers.set("X-Content-Type-Options", "nosniff");
        for (k, v) in &self.headers {
            let _ = headers.set(k, v);
        }
        match Response::from_bytes(self.body.into_bytes()) {
            Ok(r) => r.with_status(self.status).with_headers(headers),
            Err(_) => Response::empty()
                .map(|r| r.with_status(503))
                .unwrap_or_else(|_| Response::builder().with_status(503).empty()),
        }
    }
}

/// Parses a JSON body into `T`, turning every serde error into a 400 whose
/// detail says what is wrong (unknown field, wrong type, bad id...).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.is_empty() {
        return Err(Problem::invalid("a JSON body is required"));
    }
    let text = std::str::from_utf8(body).map_err(|_| Problem::invalid("the body is not UTF-8"))?;
    serde_json::from_str(text).map_err(|e| Problem::invalid(format!("invalid JSON body: {e}")))
}

/// The canonical form of a body for idempotency fingerprints: JSON is
/// re-serialized (keys sorted, whitespace dropped); anything else is kept.
pub fn canonical_body(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec()),
        Err(_) => body.to_vec(),
    }
}

/// Query string pairs of a URL, decoded.
pub fn query_pairs(url: &worker::Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Comma-separated values of a query parameter, every occurrence, trimmed, empty ones dropped.
pub fn query_list(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// RFC 3339 UTC, millisecond precision, from epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parses an RFC 3339 timestamp into epoch milliseconds (any offset; fractional seconds kept to ms).
/// At most `max` bytes of `s`, cut at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            ms *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 60 + om;
            if *c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) - offset_min * 60) * 1000 + ms)
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `make fuzz` (requests::request_front_door, libFuzzer): serde_json's
    /// default float parser may miss the nearest f64 by an ulp, so the canonical
    /// body of `1.0000011000002314` (`...2311`) re-canonicalized to `...2313`.
    #[test]
    fn canonical_body_is_a_fixed_point_for_floats() {
        for body in [
            &b"1.0000011000002314"[..],
            br#"{"destination":{"lat":1.0000011000002314,"lon":-0.1}}"#,
        ] {
            let c = canonical_body(body);
            assert_eq!(canonical_body(&c), c, "{}", String::from_utf8_lossy(body));
        }
        let v: f64 = serde_json::from_slice(b"1.0000011000002314").unwrap();
        assert_eq!(v, "1.0000011000002314".parse::<f64>().unwrap());
    }

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 1_764_000_000_123, 951_782_400_000, -1] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2026-11-26T10:00:00+01:00"),
            parse_rfc3339("2026-11-26T09:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-11-26"), None);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn problem_body_has_the_rfc_9457_members() {
        let p = Problem::invalid("nope").with("lines", [1, 2]);
        let b = p.body();
        assert_eq!(b["status"], 400);
        assert_eq!(b["code"], "invalid_request");
        assert_eq!(b["lines"], serde_json::json!([1, 2]));
        assert!(b["type"].as_str().unwrap().ends_with("invalid_request"));
    }
}
