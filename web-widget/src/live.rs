//! Live updates, the pure part: the socket's URL, its messages, gap
//! detection per SKU and location, and the reconnect schedule.
//!
//! The protocol of `GET /v1/availability/live` (API.md): a `snapshot` per SKU
//! first, then one `change` `{sku, location, available, seq}` per change,
//! where `seq` is the position's version (+1 per change). A `seq` more than
//! one ahead means a change was missed: the widget asks for a snapshot
//! (`{"type":"resync","sku":..}`) and ignores changes of that SKU until it
//! arrives. A `seq` not ahead is a duplicate or older: ignored.

use serde::Deserialize;

/// Longest frame parsed (a snapshot of one SKU at every location is small).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;
/// First reconnect delay.
pub const BACKOFF_BASE_MS: u32 = 500;
/// No reconnect waits longer than this.
pub const BACKOFF_CAP_MS: u32 = 30_000;
/// After this many failed connections in a row the widgets poll instead.
pub const MAX_RECONNECTS: u32 = 8;
/// Seconds between polls when live updates are unavailable and the page set no `refresh`.
pub const FALLBACK_POLL_SECONDS: u32 = 30;
/// The server closes with this when a request breaks its rules: retrying will not help.
pub const CLOSE_POLICY: u16 = 1008;
/// SKUs on one socket (the server's bound).
pub const MAX_SKUS_PER_SOCKET: usize = 20;

/// The delay before reconnect attempt `attempt` (0-based): exponential from
/// [`BACKOFF_BASE_MS`], capped at [`BACKOFF_CAP_MS`], with "equal jitter":
/// half the step fixed, half scaled by `jitter` in `[0, 1)` (clamped), so
/// many pages dropped together do not come back together. `None` once
/// [`MAX_RECONNECTS`] attempts have failed: poll instead.
pub fn backoff_ms(attempt: u32, jitter: f64) -> Option<u32> {
    if attempt >= MAX_RECONNECTS {
        return None;
    }
    let step = BACKOFF_BASE_MS
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP_MS);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = step / 2;
    Some(half + (f64::from(step - half) * jitter) as u32)
}

/// Whether a close with `code` is worth reconnecting after.
pub fn reconnects_after(code: u16) -> bool {
    code != CLOSE_POLICY
}

/// `ws(s)://host/v1/availability/live?sku=A,B&channel=..&key=..` for an `http(s)` api.
pub fn live_url(api: &str, key: &str, skus: &[String], channel: &str) -> Option<String> {
    let ws = if let Some(rest) = api.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        format!("ws://{}", api.strip_prefix("http://")?)
    };
    Some(format!(
        "{ws}/v1/availability/live?sku={}&channel={channel}&key={}",
        skus.join(","),
        encode(key)
    ))
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One position in a frame.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LiveRow {
    pub sku: String,
    pub location: String,
    pub available: i64,
    pub seq: u64,
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Snapshot { sku: String, items: Vec<LiveRow> },
    Change(LiveRow),
    Pong,
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    items: Option<Vec<LiveRow>>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    available: Option<i64>,
    #[serde(default)]
    seq: Option<u64>,
}

impl Frame {
    /// `None` for anything that is not a frame of the protocol (ignored).
    pub fn parse(text: &str) -> Option<Frame> {
        if text == "pong" {
            return Some(Frame::Pong);
        }
        if text.len() > MAX_FRAME_BYTES {
            return None;
        }
        let raw: RawFrame = serde_json::from_str(text).ok()?;
        match raw.kind.as_str() {
            "snapshot" => {
                let sku = raw.sku?;
                let items = raw.items?;
                if items.iter().any(|r| r.sku != sku) {
                    return None;
                }
                Some(Frame::Snapshot { sku, items })
            }
            "change" => Some(Frame::Change(LiveRow {
                sku: raw.sku?,
                location: raw.location?,
                available: raw.available?,
                seq: raw.seq?,
            })),
            _ => None,
        }
    }
}

/// What to do with a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The next change (or the first seen): show it.
    Apply,
    /// Already seen, or older: ignore it.
    Stale,
    /// One or more changes were missed: ask for a snapshot.
    Gap,
    /// A snapshot was asked for and has not come: ignore it.
    Resyncing,
}

/// The last `seq` seen per SKU and location, and the SKUs awaiting a snapshot.
#[derive(Clone, Debug, Default)]
pub struct Seqs {
    /// `(sku, location, seq)`; a page watches a handful of SKUs, so a list.
    seen: Vec<(String, String, u64)>,
    resyncing: Vec<String>,
}

impl Seqs {
    /// A snapshot: every row is the truth now.
    pub fn snapshot(&mut self, sku: &str, items: &[LiveRow]) {
        self.resyncing.retain(|s| s != sku);
        for r in items {
            self.remember(r);
        }
    }

    /// A change: what to do with it (and remember it when applied).
    pub fn change(&mut self, r: &LiveRow) -> Verdict {
        if self.resyncing.contains(&r.sku) {
            return Verdict::Resyncing;
        }
        let last = self
            .seen
            .iter()
            .find(|(s, l, _)| *s == r.sku && *l == r.location)
            .map(|x| x.2);
        let verdict = match last {
            None => Verdict::Apply,
            Some(last) if r.seq <= last => Verdict::Stale,
            Some(last) if r.seq == last.saturating_add(1) => Verdict::Apply,
            Some(_) => Verdict::Gap,
        };
        match verdict {
            Verdict::Apply => self.remember(r),
            Verdict::Gap => self.resyncing.push(r.sku.clone()),
            _ => {}
        }
        verdict
    }

    fn remember(&mut self, r: &LiveRow) {
        match self
            .seen
            .iter_mut()
            .find(|(s, l, _)| *s == r.sku && *l == r.location)
        {
            Some(x) => x.2 = r.seq,
            None => self.seen.push((r.sku.clone(), r.location.clone(), r.seq)),
        }
    }

    /// A new connection: everything will come again in snapshots.
    pub fn reset(&mut self) {
        self.seen.clear();
        self.resyncing.clear();
    }
}

/// The message asking for a snapshot of `sku` (a validated identifier: no escaping).
pub fn resync_message(sku: &str) -> String {
    format!(r#"{{"type":"resync","sku":"{sku}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sku: &str, loc: &str, available: i64, seq: u64) -> LiveRow {
        LiveRow {
            sku: sku.into(),
            location: loc.into(),
            available,
            seq,
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_bounded() {
        assert_eq!(backoff_ms(0, 0.0), Some(250));
        assert_eq!(backoff_ms(0, 0.999), Some(499));
        assert_eq!(backoff_ms(1, 0.0), Some(500));
        assert_eq!(backoff_ms(3, 0.5), Some(3_000));
        for a in 0..MAX_RECONNECTS {
            for j in [0.0, 0.3, 0.99, 1.0, -4.0, 9.0, f64::NAN, f64::INFINITY] {
                let d = backoff_ms(a, j).expect("within the bound");
                assert!(d <= BACKOFF_CAP_MS, "{a} {j} {d}");
                assert!(d >= BACKOFF_BASE_MS / 2, "{a} {j} {d}");
                if a > 0 {
                    assert!(d >= backoff_ms(a - 1, 0.0).unwrap());
                }
            }
        }
        assert_eq!(backoff_ms(7, 0.0), Some(15_000));
        assert_eq!(backoff_ms(MAX_RECONNECTS, 0.0), None);
        assert_eq!(backoff_ms(u32::MAX, 0.5), None);
        let total: u32 = (0..MAX_RECONNECTS).filter_map(|a| backoff_ms(a, 1.0)).sum();
        assert!(total < 120_000, "gives up within two minutes: {total}");
        assert!(reconnects_after(1006) && reconnects_after(1013) && !reconnects_after(1008));
    }

    #[test]
    fn gaps_duplicates_and_resync() {
        let mut s = Seqs::default();
        s.snapshot("A", &[row("A", "s1", 5, 10), row("A", "s2", 0, 3)]);
        assert_eq!(s.change(&row("A", "s1", 4, 11)), Verdict::Apply);
        assert_eq!(s.change(&row("A", "s1", 4, 11)), Verdict::Stale);
        assert_eq!(s.change(&row("A", "s1", 9, 9)), Verdict::Stale);
        assert_eq!(s.change(&row("A", "s2", 1, 4)), Verdict::Apply);
        // A location first seen in a change (received there after the snapshot).
        assert_eq!(s.change(&row("A", "s3", 2, 1)), Verdict::Apply);
        // Other SKUs are independent.
        assert_eq!(s.change(&row("B", "s1", 2, 7)), Verdict::Apply);
        assert_eq!(s.change(&row("A", "s1", 2, 13)), Verdict::Gap);
        assert_eq!(s.change(&row("A", "s1", 1, 14)), Verdict::Resyncing);
        assert_eq!(s.change(&row("B", "s1", 1, 8)), Verdict::Apply);
        s.snapshot("A", &[row("A", "s1", 1, 14)]);
        assert_eq!(s.change(&row("A", "s1", 0, 15)), Verdict::Apply);
        s.reset();
        assert_eq!(s.change(&row("A", "s1", 0, 99)), Verdict::Apply);
    }

    #[test]
    fn frames_parse_and_anything_else_is_ignored() {
        assert_eq!(Frame::parse("pong"), Some(Frame::Pong));
        assert_eq!(
            Frame::parse(
                r#"{"type":"change","sku":"A","location":"s1","available":3,"seq":4,"on_hand":5,"channel":"online"}"#
            ),
            Some(Frame::Change(row("A", "s1", 3, 4)))
        );
        assert_eq!(
            Frame::parse(
                r#"{"type":"snapshot","sku":"A","as_of":"x","items":[{"sku":"A","location":"s1","available":3,"seq":4}]}"#
            ),
            Some(Frame::Snapshot {
                sku: "A".into(),
                items: vec![row("A", "s1", 3, 4)]
            })
        );
        for bad in [
            "",
            "{}",
            r#"{"type":"change","sku":"A","location":"s1","available":3}"#,
            r#"{"type":"change","sku":"A","location":"s1","available":3,"seq":-1}"#,
            r#"{"type":"snapshot","sku":"A","items":[{"sku":"B","location":"s1","available":3,"seq":4}]}"#,
            r#"{"type":"hello"}"#,
        ] {
            assert_eq!(Frame::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls() {
        let skus = vec!["A".to_string(), "B".to_string()];
        assert_eq!(
            live_url("https://shop.example", "pk_1+/", &skus, "online").as_deref(),
            Some("wss://shop.example/v1/availability/live?sku=A,B&channel=online&key=pk_1%2B%2F")
        );
        assert_eq!(
            live_url("http://127.0.0.1:8787", "pk_dev", &skus[..1], "pos").as_deref(),
            Some("ws://127.0.0.1:8787/v1/availability/live?sku=A&channel=pos&key=pk_dev")
        );
        assert_eq!(live_url("ftp://x", "k", &skus, "online"), None);
        assert_eq!(resync_message("A"), r#"{"type":"resync","sku":"A"}"#);
    }
}
