//! The plain-text receipt for ESC/POS printers: every line at most
//! [`COLUMNS`] characters, lines separated by `\n`. Characters an 80 mm
//! printer's code page may lack (beyond Latin Extended-B, or two columns
//! wide) are printed as `?`, so a character is always one column.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{format_date, format_time, percent, Direction, Receipt};
use crate::money::Money;

/// Columns of a 42-column (Font A, 80 mm) ESC/POS printer.
pub const COLUMNS: usize = 42;
/// A title wraps over at most this many lines.
const MAX_TITLE_LINES: usize = 3;

/// One column per character: control characters dropped, anything beyond
/// Latin Extended-B shown as `?`.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| if (c as u32) < 0x250 { c } else { '?' })
        .collect()
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// An amount with exactly the currency's decimal places, signed.
pub fn amount(m: Money) -> String {
    let mut a = m.amount;
    a.rescale(m.currency.minor_units());
    a.to_string()
}

fn neg(m: Money) -> String {
    if m.amount.is_zero() {
        amount(m)
    } else {
        format!("-{}", amount(m))
    }
}

struct Out(Vec<String>);

impl Out {
    fn push(&mut self, s: &str) {
        self.0.push(cut(&printable(s), COLUMNS));
    }
    /// `left` then `right` flush right; `left` is cut to fit.
    fn lr(&mut self, left: &str, right: &str) {
        let right = cut(&printable(right), COLUMNS);
        let room = COLUMNS.saturating_sub(right.chars().count() + 1);
        let left = cut(&printable(left), room);
        let pad = COLUMNS - left.chars().count() - right.chars().count();
        self.0.push(format!("{left}{}{right}", " ".repeat(pad)));
    }
    fn center(&mut self, s: &str) {
        let s = cut(&printable(s), COLUMNS);
        let pad = (COLUMNS - s.chars().count()) / 2;
        self.0.push(format!("{}{s}", " ".repeat(pad)));
    }
    fn rule(&mut self) {
        self.0.push("-".repeat(COLUMNS));
    }
    /// Word-wrapped over at most `max` lines of `COLUMNS - indent`.
    fn wrap(&mut self, s: &str, indent: usize, max: usize) {
        let width = COLUMNS - indent;
        let mut lines: Vec<String> = Vec::new();
        let mut cur = String::new();
        for word in printable(s).split_whitespace() {
            let mut word: String = word.to_string();
            loop {
                let used = cur.chars().count();
                let wl = word.chars().count();
                let need = if used == 0 { wl } else { used + 1 + wl };
                if need <= width {
                    if used > 0 {
                        cur.push(' ');
                    }
                    cur.push_str(&word);
                    break;
                }
                if used > 0 {
                    lines.push(core::mem::take(&mut cur));
                    continue;
                }
                // A word longer than the line: split it.
                lines.push(cut(&word, width));
                word = word.chars().skip(width).collect();
                if word.is_empty() {
                    break;
                }
            }
        }
        if !cur.is_empty() {
            lines.push(cur);
        }
        let n = lines.len();
        for (i, mut l) in lines.into_iter().take(max).enumerate() {
            if i + 1 == max && n > max {
                l = format!("{}~", cut(&l, width - 1));
            }
            self.0.push(format!("{}{l}", " ".repeat(indent)));
        }
    }
}

/// The receipt as 42-column text; `copy` marks a reprint.
pub fn render(r: &Receipt, copy: bool) -> String {
    let mut o = Out(Vec::new());
    if copy {
        o.center("*** COPY - REPRINT ***");
    }
    o.center(&r.shop);
    o.center(&format!("{} ({})", r.location_name, r.location));
    o.center(r.kind.title());
    o.lr(&format!("No. {}", r.number), &format_time(r.issued_at));
    if let Some(reference) = &r.reference {
        o.push(&format!("Returns against {reference}"));
    }
    o.rule();
    for l in &r.lines {
        let mark = match l.direction {
            Direction::Sold => "",
            Direction::Returned => "RETURNED ",
        };
        o.wrap(&format!("{mark}{}", l.title), 0, MAX_TITLE_LINES);
        let opts: Vec<String> = l.options.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let detail = if opts.is_empty() {
            l.sku.clone()
        } else {
            format!("{} {}", l.sku, opts.join(", "))
        };
        o.wrap(&detail, 2, 2);
        let each = format!("  {} x {}", l.qty, amount(l.unit_price));
        let total = match l.direction {
            Direction::Sold => amount(l.amount),
            Direction::Returned => neg(l.amount),
        };
        o.lr(&each, &total);
        if let (Some(d), Some(c)) = (l.discount, l.catalog_price) {
            o.lr(&format!("  Price set (was {})", amount(c)), &neg(d));
        }
    }
    o.rule();
    let t = &r.totals;
    o.lr("Subtotal", &amount(t.subtotal));
    if !t.discount.amount.is_zero() {
        o.lr("You saved", &amount(t.discount));
    }
    for x in &r.taxes {
        let label = if r.tax_inclusive {
            format!("incl. tax {} of {}", percent(x.rate), amount(x.gross))
        } else {
            format!("Tax {} on {}", percent(x.rate), amount(x.net))
        };
        o.lr(&label, &amount(x.tax));
    }
    if r.tax_inclusive {
        o.lr("Net", &amount(t.net));
    }
    o.lr(&format!("TOTAL {}", r.currency), &amount(t.total));
    for p in &r.payments {
        o.lr(&format!("Paid {}", p.method), &amount(p.amount));
    }
    if !t.change.amount.is_zero() {
        o.lr("Change", &amount(t.change));
    }
    for p in &r.refunds {
        o.lr(&format!("Refunded {}", p.method), &amount(p.amount));
    }
    if let Some(c) = &r.customer {
        o.rule();
        match &c.name {
            Some(n) => o.wrap(&format!("Customer {n} ({})", c.id), 0, 2),
            None => o.push(&format!("Customer {}", c.id)),
        }
        if let Some(l) = c.loyalty {
            o.lr("Points earned", &l.earned.to_string());
            o.lr("Points redeemed", &l.redeemed.to_string());
            o.lr("Points balance", &l.balance.to_string());
        }
    }
    o.rule();
    if let Some(by) = r.return_by {
        o.wrap(
            &format!(
                "Returns accepted until {} ({} days) with this receipt.",
                format_date(by),
                r.return_window_days
            ),
            0,
            2,
        );
    }
    o.center(&r.number);
    if copy {
        o.center("*** COPY - REPRINT ***");
    }
    let mut s = o.0.join("\n");
    s.push('\n');
    s
}
