//! The HTML form: one self-contained page (inline CSS, inline SVG bar charts, no script, nothing
//! fetched) that a compliance officer can open from disk, print or attach to a ticket.

use super::to_csv::UNAUTHENTICATED;
use super::{ABOUT_DENIALS, ABOUT_FOREIGN, ABOUT_INTEGRITY, KYC_DUE_DAYS, Report, sci};

/// Bar colours, also used by the legend; the Chromium test looks for them in the screenshot.
const ALLOWED_FILL: &str = "#2563eb";
const DENIED_FILL: &str = "#dc2626";
const REASON_FILL: &str = "#b45309";

/// Chart geometry in CSS pixels; two charts side by side fit a 1200 px window.
const CHART_W: f64 = 540.0;
const LABEL_W: f64 = 200.0;
const VALUE_W: f64 = 110.0;
const ROW_H: f64 = 26.0;
const BAR_H: f64 = 18.0;
const PAD: f64 = 4.0;
const LABEL_CHARS: usize = 28;

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
       background: #fff; margin: 0 auto; max-width: 1160px; padding: 16px 16px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 6px; border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
.meta, .about { color: #4b5563; margin: 4px 0; }
.warn { background: #fef3c7; border: 1px solid #f59e0b; border-radius: 4px; padding: 8px 12px; }
dl.totals { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0 20px; }
dl.totals div { border: 1px solid #e5e7eb; border-radius: 4px; padding: 6px 12px; min-width: 100px; }
dl.totals dt { color: #6b7280; font-size: 12px; }
dl.totals dd { margin: 0; font-size: 18px; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 6px; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2937; }
.legend { color: #4b5563; font-size: 12px; margin: 4px 0 0; }
.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
.swatch.allowed { background: #2563eb; }
.swatch.denied { background: #dc2626; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 5px; text-align: left; vertical-align: top; }
th { vertical-align: bottom; }
th { background: #f9fafb; font-weight: 600; }
.num { text-align: right; }
td.num, .seen { white-space: nowrap; }
.empty { color: #6b7280; font-style: italic; }
footer { margin-top: 32px; border-top: 1px solid #e5e7eb; padding-top: 8px; color: #4b5563; }
@media print { .charts, tr { break-inside: avoid; } }
"#;

pub(super) fn render(report: &Report) -> String {
    let s = &report.settings;
    let t = &report.totals;
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // Even if a string escaped the escaping, the page could run nothing and fetch nothing.
    h.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!("<title>Foreign-access report, {}</title>\n", esc(&s.window_text())));
    h.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>Foreign-access report</h1>\n"));
    h.push_str(&format!(
        "<p class=\"meta\">Window: <strong id=\"window\">{}</strong></p>\n<p class=\"meta\" id=\"settings\">{}</p>\n\
         <p class=\"meta\">Generated at {}.</p>\n",
        esc(&s.window_text()),
        esc(&s.settings_text()),
        esc(&s.generated_at)
    ));
    if let Some(bad) = &t.first_bad_line {
        h.push_str(&format!(
            "<p class=\"warn\" id=\"bad-lines\">{} line(s) could not be read and are not counted; the first: \
             <code>{}</code></p>\n",
            t.bad_lines,
            esc(&bad.to_string())
        ));
    }
    h.push_str("</header>\n<dl class=\"totals\">\n");
    let cards = [
        ("decisions", "Decisions in window", t.decisions),
        ("allowed", "Allowed", t.allowed),
        ("denied", "Denied", t.denied),
        ("errors", "Upstream errors", t.errors),
        ("outside-window", "Outside window", t.outside_window),
        ("records", "Records read", t.records),
        ("bad-lines", "Bad lines", t.bad_lines),
        ("files", "Files", report.files.len() as u64),
    ];
    for (id, label, n) in cards {
        h.push_str(&format!("<div><dt>{label}</dt><dd id=\"total-{id}\">{}</dd></div>\n", group(n)));
    }
    h.push_str("</dl>\n");

    h.push_str("<section class=\"charts\">\n");
    let foreign_bars: Vec<Bar> = report
        .foreign_access
        .iter()
        .map(|r| Bar {
            label: format!("{} / {}", r.tenant, r.model),
            tip: format!(
                "{} ({}, {}) / {}: {} allowed, {} denied",
                r.tenant,
                r.tenant_country.as_deref().unwrap_or("?"),
                r.jurisdiction,
                r.model,
                r.requests,
                r.denied
            ),
            parts: vec![(r.requests, ALLOWED_FILL, "allowed"), (r.denied, DENIED_FILL, "denied")],
            value: if r.denied > 0 {
                format!("{} + {} denied", group(r.requests), group(r.denied))
            } else {
                group(r.requests)
            },
        })
        .collect();
    h.push_str(&figure(
        "foreign-chart",
        "Foreign requests to models at or above the line, per tenant and model",
        &foreign_bars,
        "No foreign requests to models at or above the line in this window.",
    ));
    let reason_bars: Vec<Bar> = report
        .denials_by_reason()
        .into_iter()
        .map(|(reason, n)| Bar {
            label: reason.to_owned(),
            tip: format!("{reason}: {n}"),
            parts: vec![(n, REASON_FILL, "reason")],
            value: group(n),
        })
        .collect();
    h.push_str(&figure("denials-chart", "Denials per reason", &reason_bars, "No denials in this window."));
    h.push_str("</section>\n");

    h.push_str(&format!(
        "<section id=\"foreign-access\">\n<h2>Foreign access</h2>\n<p class=\"about\">{}</p>\n",
        esc(ABOUT_FOREIGN)
    ));
    let head = [
        ("Tenant", false),
        ("Country", false),
        ("Jurisdiction", false),
        ("Model", false),
        ("Training FLOPs", true),
        ("Requests", true),
        ("Denied", true),
        ("Prompt tokens", true),
        ("Completion tokens", true),
        ("Total tokens", true),
        ("Inference FLOPs", true),
        ("Un&shy;metered", true),
        ("First and last seen", false),
    ];
    h.push_str(&table_head("foreign-access-table", &head));
    for r in &report.foreign_access {
        let cells = [
            esc(&r.tenant),
            esc(r.tenant_country.as_deref().unwrap_or("")),
            esc(&r.jurisdiction),
            esc(&r.model),
            sci(r.training_flops),
            group(r.requests),
            group(r.denied),
            group(r.prompt_tokens),
            group(r.completion_tokens),
            group(r.total_tokens),
            sci(r.flops),
            group(r.unmetered),
            // One column for both keeps the table inside a 1200 px window.
            format!(
                "<span class=\"seen\">{}</span><br><span class=\"seen\">{}</span>",
                esc(r.first_seen.as_deref().unwrap_or("")),
                esc(r.last_seen.as_deref().unwrap_or(""))
            ),
        ];
        h.push_str(&table_row(&head, &cells));
    }
    h.push_str(&table_foot(report.foreign_access.is_empty(), head.len()));
    h.push_str("</section>\n");

    h.push_str(&format!(
        "<section id=\"denials\">\n<h2>Denials by reason</h2>\n<p class=\"about\">{}</p>\n",
        esc(ABOUT_DENIALS)
    ));
    let head = [("Reason", false), ("Tenant", false), ("Count", true)];
    h.push_str(&table_head("denials-table", &head));
    for d in &report.denials {
        let cells = [esc(&d.reason), esc(d.tenant.as_deref().unwrap_or(UNAUTHENTICATED)), group(d.count)];
        h.push_str(&table_row(&head, &cells));
    }
    h.push_str(&table_foot(report.denials.is_empty(), head.len()));
    h.push_str("</section>\n");

    if let Some(k) = &report.kyc {
        h.push_str(&format!(
            "<section id=\"kyc\">\n<h2>Customer verification</h2>\n<p class=\"about\">{}</p>\n",
            esc(&format!(
                "Tenants whose KYC record (tenants.toml) is due for re-verification within {KYC_DUE_DAYS} days of {}, in \
                 its grace period, or lapsed: a lapsed tenant is refused kyc_expired.",
                k.as_of
            ))
        ));
        let head = [
            ("Tenant", false),
            ("State", false),
            ("Verified by", false),
            ("Verified on", false),
            ("Re-verify by", false),
            ("Refused from", false),
        ];
        h.push_str(&table_head("kyc-table", &head));
        for t in &k.tenants {
            let cells = [
                esc(&t.tenant),
                esc(t.state),
                esc(&t.verified_by),
                t.verified_on.to_string(),
                t.reverify_by.to_string(),
                t.refused_from.to_string(),
            ];
            h.push_str(&table_row(&head, &cells));
        }
        h.push_str(&table_foot(k.tenants.is_empty(), head.len()));
        h.push_str("</section>\n");
    }

    h.push_str("<section id=\"files\">\n<h2>Files read</h2>\n<ol>\n");
    for path in &report.files {
        h.push_str(&format!("<li><code>{}</code></li>\n", esc(&path.to_string_lossy())));
    }
    h.push_str(&format!(
        "</ol>\n<p class=\"about\">{} non-blank lines, {} records, {} decisions outside the window.</p>\n</section>\n",
        group(t.lines),
        group(t.records),
        group(t.outside_window)
    ));
    h.push_str(&format!("<footer>\n<p id=\"integrity\">{}</p>\n</footer>\n</body>\n</html>\n", esc(ABOUT_INTEGRITY)));
    h
}

/// One bar of a horizontal bar chart, made of stacked parts.
struct Bar {
    label: String,
    tip: String,
    parts: Vec<(u64, &'static str, &'static str)>,
    value: String,
}

fn figure(id: &str, caption: &str, bars: &[Bar], empty: &str) -> String {
    let mut f = format!("<figure id=\"{id}\">\n<figcaption>{caption}</figcaption>\n");
    if bars.is_empty() {
        f.push_str(&format!("<p class=\"empty\">{empty}</p>\n</figure>\n"));
        return f;
    }
    let height = PAD * 2.0 + ROW_H * bars.len() as f64;
    f.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" aria-label=\"{caption}\" \
         width=\"{CHART_W}\" height=\"{height}\" viewBox=\"0 0 {CHART_W} {height}\">\n"
    ));
    let max = bars.iter().map(|b| b.parts.iter().map(|p| p.0).sum::<u64>()).max().unwrap_or(0).max(1);
    let scale = (CHART_W - LABEL_W - VALUE_W) / max as f64;
    for (i, bar) in bars.iter().enumerate() {
        let y = PAD + ROW_H * i as f64;
        let text_y = y + BAR_H / 2.0 + 4.0;
        f.push_str(&format!(
            "<g class=\"row\"><title>{}</title>\n<text class=\"label\" x=\"{}\" y=\"{text_y}\" text-anchor=\"end\">{}</text>\n",
            esc(&bar.tip),
            LABEL_W - 8.0,
            esc(&clip(&bar.label))
        ));
        let mut x = LABEL_W;
        for &(n, fill, class) in &bar.parts {
            if n == 0 {
                continue;
            }
            let w = n as f64 * scale;
            f.push_str(&format!(
                "<rect class=\"bar {class}\" x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{fill}\"/>\n"
            ));
            x += w;
        }
        f.push_str(&format!(
            "<text class=\"value\" x=\"{:.1}\" y=\"{text_y}\">{}</text></g>\n",
            x + 6.0,
            esc(&bar.value)
        ));
    }
    f.push_str("</svg>\n");
    if bars.iter().any(|b| b.parts.len() > 1) {
        f.push_str(
            "<p class=\"legend\"><span class=\"swatch allowed\"></span>allowed\
             <span class=\"swatch denied\"></span>denied</p>\n",
        );
    }
    f.push_str("</figure>\n");
    f
}

fn table_head(id: &str, head: &[(&str, bool)]) -> String {
    let mut t = format!("<div class=\"scroll\"><table id=\"{id}\">\n<thead><tr>");
    for &(name, num) in head {
        t.push_str(&format!("<th{}>{name}</th>", if num { " class=\"num\"" } else { "" }));
    }
    t.push_str("</tr></thead>\n<tbody>\n");
    t
}

/// `cells` are already escaped or numeric.
fn table_row(head: &[(&str, bool)], cells: &[String]) -> String {
    let mut t = String::from("<tr>");
    for (&(_, num), cell) in head.iter().zip(cells) {
        t.push_str(&format!("<td{}>{cell}</td>", if num { " class=\"num\"" } else { "" }));
    }
    t.push_str("</tr>\n");
    t
}

fn table_foot(empty: bool, columns: usize) -> String {
    let none = if empty {
        format!("<tr><td class=\"empty\" colspan=\"{columns}\">None in this window.</td></tr>\n")
    } else {
        String::new()
    };
    format!("{none}</tbody>\n</table></div>\n")
}

/// Escapes text for element content and quoted attribute values alike.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Chart labels are cut so a long tenant id cannot push the bars off the chart; the row's tooltip
/// and the table carry the full text.
fn clip(s: &str) -> String {
    if s.chars().count() <= LABEL_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(LABEL_CHARS - 1).collect();
    out.push('…');
    out
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
