//! The HTML receipt: one self-contained page sized for 80 mm thermal paper
//! (72 mm printable) that also reads as an email: inline styles only, no
//! scripts, no images (the barcode is inline SVG bars, and the number is
//! printed under it as text).
use alloc::format;
use alloc::string::{String, ToString};

use super::text::amount;
use super::{code128, format_date, format_time, percent, Direction, Receipt};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The Code 128 bars of `text` as inline SVG (empty when it has none).
pub fn barcode_svg(text: &str) -> String {
    let Ok(widths) = code128::widths(text) else {
        return String::new();
    };
    let quiet = 10u32;
    let total: u32 = widths.iter().map(|w| u32::from(*w)).sum::<u32>() + 2 * quiet;
    let mut x = quiet;
    let mut bars = String::new();
    for (i, w) in widths.iter().enumerate() {
        let w = u32::from(*w);
        if i % 2 == 0 {
            bars.push_str(&format!(r#"<rect x="{x}" y="0" width="{w}" height="50"/>"#));
        }
        x += w;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="barcode {}" viewBox="0 0 {total} 50" width="100%" height="50" preserveAspectRatio="none" style="display:block;max-width:{}px;margin:0 auto" shape-rendering="crispEdges" fill="black">{bars}</svg>"##,
        escape(text),
        total * 2,
    )
}

const TD: &str = "padding:1px 0;vertical-align:top";
const TDR: &str = "padding:1px 0;vertical-align:top;text-align:right;white-space:nowrap";

fn row(out: &mut String, left: &str, right: &str, strong: bool) {
    let w = if strong { "font-weight:bold;" } else { "" };
    out.push_str(&format!(
        r#"<tr><td style="{w}{TD}">{left}</td><td style="{w}{TDR}">{right}</td></tr>"#
    ));
}

fn rule(out: &mut String) {
    out.push_str(r#"<hr style="border:0;border-top:1px dashed black;margin:6px 0">"#);
}

/// The receipt as a complete HTML document; `copy` marks a reprint.
pub fn render(r: &Receipt, copy: bool) -> String {
    let e = escape;
    let mut o = String::new();
    o.push_str(&format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Receipt {}</title></head><body style="margin:0;padding:0;background:white">"#,
        e(&r.number)
    ));
    o.push_str(r#"<div id="receipt" style="width:72mm;max-width:100%;margin:0 auto;padding:4mm 2mm;font-family:'Courier New',Courier,monospace;font-size:12px;line-height:1.35;color:black;background:white">"#);
    let copy_banner = r#"<div style="text-align:center;font-weight:bold;border:2px solid black;padding:2px;margin:4px 0">COPY - REPRINT</div>"#;
    if copy {
        o.push_str(copy_banner);
    }
    o.push_str(&format!(
        r#"<div style="text-align:center;font-size:15px;font-weight:bold">{}</div><div style="text-align:center">{} ({})</div><div style="text-align:center;font-weight:bold;margin-top:4px">{}</div>"#,
        e(&r.shop),
        e(&r.location_name),
        e(r.location.as_str()),
        r.kind.title()
    ));
    o.push_str(
        r#"<table role="presentation" style="width:100%;border-collapse:collapse;font-size:12px">"#,
    );
    row(
        &mut o,
        &format!("No. {}", e(&r.number)),
        &format_time(r.issued_at),
        false,
    );
    if let Some(reference) = &r.reference {
        row(
            &mut o,
            &format!("Returns against {}", e(reference)),
            "",
            false,
        );
    }
    o.push_str("</table>");
    rule(&mut o);
    o.push_str(
        r#"<table role="presentation" style="width:100%;border-collapse:collapse;font-size:12px">"#,
    );
    for l in &r.lines {
        let (mark, sign) = match l.direction {
            Direction::Sold => ("", ""),
            Direction::Returned => ("RETURNED ", "-"),
        };
        let opts: alloc::vec::Vec<String> = l
            .options
            .iter()
            .map(|(k, v)| format!("{}: {}", e(k), e(v)))
            .collect();
        o.push_str(&format!(
            r#"<tr><td colspan="2" style="{TD};font-weight:bold">{mark}{}</td></tr><tr><td colspan="2" style="{TD};padding-left:8px;font-size:11px">{}{}{}</td></tr>"#,
            e(&l.title),
            e(&l.sku),
            if opts.is_empty() { "" } else { " &middot; " },
            opts.join(", ")
        ));
        row(
            &mut o,
            &format!(
                r#"<span style="padding-left:8px">{} &times; {}</span>"#,
                l.qty,
                amount(l.unit_price)
            ),
            &format!("{sign}{}", amount(l.amount)),
            false,
        );
        if let (Some(d), Some(c)) = (l.discount, l.catalog_price) {
            row(
                &mut o,
                &format!(
                    r#"<span style="padding-left:8px">Price set (was {})</span>"#,
                    amount(c)
                ),
                &format!("-{}", amount(d)),
                false,
            );
        }
    }
    o.push_str("</table>");
    rule(&mut o);
    let t = &r.totals;
    o.push_str(
        r#"<table role="presentation" style="width:100%;border-collapse:collapse;font-size:12px">"#,
    );
    row(&mut o, "Subtotal", &amount(t.subtotal), false);
    if !t.discount.amount.is_zero() {
        row(&mut o, "You saved", &amount(t.discount), false);
    }
    for x in &r.taxes {
        let label = if r.tax_inclusive {
            format!("incl. tax {} of {}", percent(x.rate), amount(x.gross))
        } else {
            format!("Tax {} on {}", percent(x.rate), amount(x.net))
        };
        row(&mut o, &label, &amount(x.tax), false);
    }
    if r.tax_inclusive {
        row(&mut o, "Net", &amount(t.net), false);
    }
    row(
        &mut o,
        &format!("TOTAL {}", r.currency),
        &amount(t.total),
        true,
    );
    for p in &r.payments {
        row(
            &mut o,
            &format!("Paid {}", e(&p.method)),
            &amount(p.amount),
            false,
        );
    }
    if !t.change.amount.is_zero() {
        row(&mut o, "Change", &amount(t.change), true);
    }
    for p in &r.refunds {
        row(
            &mut o,
            &format!("Refunded {}", e(&p.method)),
            &amount(p.amount),
            false,
        );
    }
    o.push_str("</table>");
    if let Some(c) = &r.customer {
        rule(&mut o);
        o.push_str(r#"<table role="presentation" style="width:100%;border-collapse:collapse;font-size:12px">"#);
        let who = match &c.name {
            Some(n) => format!("{} ({})", e(n), e(&c.id)),
            None => e(&c.id),
        };
        row(&mut o, &format!("Customer {who}"), "", false);
        if let Some(l) = c.loyalty {
            row(&mut o, "Points earned", &l.earned.to_string(), false);
            row(&mut o, "Points redeemed", &l.redeemed.to_string(), false);
            row(&mut o, "Points balance", &l.balance.to_string(), true);
        }
        o.push_str("</table>");
    }
    rule(&mut o);
    if let Some(by) = r.return_by {
        o.push_str(&format!(
            r#"<p style="margin:4px 0;font-size:11px">Returns accepted until {} ({} days) with this receipt.</p>"#,
            format_date(by),
            r.return_window_days
        ));
    }
    o.push_str(r#"<div style="margin-top:6px">"#);
    o.push_str(&barcode_svg(&r.barcode));
    o.push_str(&format!(
        r#"<div style="text-align:center;letter-spacing:2px;margin-top:2px">{}</div></div>"#,
        e(&r.number)
    ));
    if copy {
        o.push_str(copy_banner);
    }
    o.push_str("</div></body></html>\n");
    o
}
