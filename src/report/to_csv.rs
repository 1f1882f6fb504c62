//! The CSV layout: `#` comment lines saying what the numbers mean, the foreign-access table, one
//! blank line, then the denials table, each table with its own header row.

use csv::{QuoteStyle, WriterBuilder};

use super::{ABOUT_DENIALS, ABOUT_FOREIGN, ABOUT_INTEGRITY, KYC_DUE_DAYS, Report, sci};

pub(crate) const FOREIGN_HEADER: [&str; 14] = [
    "tenant",
    "tenant_country",
    "jurisdiction",
    "model",
    "training_flops",
    "requests",
    "denied",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "flops",
    "unmetered",
    "first_seen",
    "last_seen",
];

pub(crate) const DENIALS_HEADER: [&str; 3] = ["reason", "tenant", "count"];

pub(crate) const KYC_HEADER: [&str; 6] =
    ["tenant", "kyc_state", "verified_by", "verified_on", "reverify_by", "refused_from"];

pub(crate) const UNAUTHENTICATED: &str = "(unauthenticated)";

pub(super) fn render(report: &Report) -> String {
    let s = &report.settings;
    let comments = [
        "customs foreign-access report".to_owned(),
        format!("generated at: {}", s.generated_at),
        format!("window: {}", s.window_text()),
        s.settings_text(),
        ABOUT_FOREIGN.to_owned(),
        ABOUT_DENIALS.to_owned(),
        report.totals.text(report.files.len()),
        ABOUT_INTEGRITY.to_owned(),
        match &report.kyc {
            None => {
                "layout: these comment lines, the foreign-access table, one blank line, the denials table".to_owned()
            }
            Some(k) => format!(
                "layout: these comment lines, the foreign-access table, one blank line, the denials table, one blank \
                 line, the tenants whose customer verification (KYC) is due within {KYC_DUE_DAYS} days of {}, in grace \
                 or lapsed",
                k.as_of
            ),
        },
    ];
    let mut out = String::new();
    for line in comments {
        out.push_str("# ");
        // A path or parser message with a line break would end the comment early.
        out.extend(line.chars().map(|c| if c.is_control() { ' ' } else { c }));
        out.push('\n');
    }
    out.push_str(&table(
        FOREIGN_HEADER,
        report.foreign_access.iter().map(|r| {
            [
                r.tenant.clone(),
                r.tenant_country.clone().unwrap_or_default(),
                r.jurisdiction.clone(),
                r.model.clone(),
                sci(r.training_flops),
                r.requests.to_string(),
                r.denied.to_string(),
                r.prompt_tokens.to_string(),
                r.completion_tokens.to_string(),
                r.total_tokens.to_string(),
                sci(r.flops),
                r.unmetered.to_string(),
                r.first_seen.clone().unwrap_or_default(),
                r.last_seen.clone().unwrap_or_default(),
            ]
        }),
    ));
    out.push('\n');
    out.push_str(&table(
        DENIALS_HEADER,
        report.denials.iter().map(|d| {
            [d.reason.clone(), d.tenant.clone().unwrap_or_else(|| UNAUTHENTICATED.to_owned()), d.count.to_string()]
        }),
    ));
    if let Some(k) = &report.kyc {
        out.push('\n');
        out.push_str(&table(
            KYC_HEADER,
            k.tenants.iter().map(|t| {
                [
                    t.tenant.clone(),
                    t.state.to_owned(),
                    t.verified_by.clone(),
                    t.verified_on.to_string(),
                    t.reverify_by.to_string(),
                    t.refused_from.to_string(),
                ]
            }),
        ));
    }
    out
}

/// One table. Non-numeric fields are quoted, so a tenant id such as `#x` cannot pass for a comment.
#[expect(clippy::expect_used, reason = "writing to a Vec does not fail, and every row has N fields")]
fn table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
    try_table(header, rows).expect("CSV into memory")
}

fn try_table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> Result<String, csv::Error> {
    let mut w = WriterBuilder::new().quote_style(QuoteStyle::NonNumeric).from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(row)?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
