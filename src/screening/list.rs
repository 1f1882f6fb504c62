//! Reading the Consolidated Screening List CSV (the ITA bulk `consolidated.csv`) into entries.

use super::normalize::normalize;

/// The CSL CSV header, in order (ITA csl-importers `shared/output.py`).
pub const CSL_COLUMNS: [&str; 29] = [
    "_id",
    "source",
    "entity_number",
    "type",
    "programs",
    "name",
    "title",
    "addresses",
    "federal_register_notice",
    "start_date",
    "end_date",
    "standard_order",
    "license_requirement",
    "license_policy",
    "call_sign",
    "vessel_type",
    "gross_tonnage",
    "gross_registered_tonnage",
    "vessel_flag",
    "vessel_owner",
    "remarks",
    "source_list_url",
    "alt_names",
    "citizenships",
    "dates_of_birth",
    "nationalities",
    "places_of_birth",
    "source_information_url",
    "ids",
];

const ID: usize = 0;
const SOURCE: usize = 1;
const TYPE: usize = 3;
const PROGRAMS: usize = 4;
const NAME: usize = 5;
const ADDRESSES: usize = 7;
const ALT_NAMES: usize = 22;

/// The separator the importer joins list-valued fields with.
const LIST_SEPARATOR: &str = "; ";

/// One row of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// `_id`; `entity_number` is not unique across sources, this is.
    pub id: String,
    /// e.g. `Entity List (EL) - Bureau of Industry and Security`.
    pub source: String,
    /// `type`: `Entity`, `Individual`, `Vessel`, `Aircraft`, or empty (the Entity List leaves it so).
    pub entry_type: String,
    pub name: String,
    /// `alt_names`, split on `"; "`.
    pub alt_names: Vec<String>,
    pub programs: Vec<String>,
    /// ISO-2 codes from the end of each address in `addresses`, deduplicated, in order.
    pub countries: Vec<String>,
    /// 1-based line of the row in the file.
    pub line: usize,
}

/// What is wrong with a list file, and where: every variant names the line, and the column when
/// one column is at fault, so the list can be fixed or the download retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScreeningError {
    #[error("line 1: the file is empty; expected the CSL header row")]
    Empty,
    #[error("line {line}, column {column}: header has no column {expected:?} (found {found:?} where it belongs)")]
    MissingColumn { line: usize, column: usize, expected: &'static str, found: String },
    #[error("line {line}, column {column}: header column is {found:?}, expected {expected:?}")]
    UnexpectedColumn { line: usize, column: usize, expected: &'static str, found: String },
    #[error("line {line}, column {column}: header has an extra column {found:?} after the 29 CSL columns")]
    ExtraColumn { line: usize, column: usize, found: String },
    #[error("line {line}: {found} fields, expected {expected}")]
    FieldCount { line: usize, found: usize, expected: usize },
    #[error("line {line}, column {column} ({field}): {problem}")]
    Quoting { line: usize, column: usize, field: &'static str, problem: &'static str },
    #[error("line {line}, column {column} ({field}): {problem}")]
    BadName { line: usize, column: usize, field: &'static str, problem: String },
    /// Anything else the CSV reader refuses (it only reads from memory, so in practice nothing).
    #[error("line {line}: {message}")]
    Csv { line: usize, message: String },
}

impl ScreeningError {
    /// 1-based line the problem is on.
    pub fn line(&self) -> usize {
        match self {
            ScreeningError::Empty => 1,
            ScreeningError::MissingColumn { line, .. }
            | ScreeningError::UnexpectedColumn { line, .. }
            | ScreeningError::ExtraColumn { line, .. }
            | ScreeningError::FieldCount { line, .. }
            | ScreeningError::Quoting { line, .. }
            | ScreeningError::BadName { line, .. }
            | ScreeningError::Csv { line, .. } => *line,
        }
    }

    /// 1-based CSV column (field number), when one column is at fault.
    pub fn column(&self) -> Option<usize> {
        match self {
            ScreeningError::MissingColumn { column, .. }
            | ScreeningError::UnexpectedColumn { column, .. }
            | ScreeningError::ExtraColumn { column, .. }
            | ScreeningError::Quoting { column, .. }
            | ScreeningError::BadName { column, .. } => Some(*column),
            ScreeningError::Empty | ScreeningError::FieldCount { .. } | ScreeningError::Csv { .. } => None,
        }
    }
}

/// Parses the CSL CSV: a header row with exactly [`CSL_COLUMNS`], then one entry per record.
///
/// The `csv` crate does the parsing; on top of it, each record's raw text is checked against the
/// fields it produced, because the crate is lenient by design and reads an unterminated quote as a
/// field running to the end of the file, which would silently swallow every entry after it. Fields
/// may be quoted (the ITA file quotes all of them) or bare, and lines may end in `\n` or `\r\n`, so a
/// list re-saved by a spreadsheet still loads.
///
/// Fails on the first problem: a list with one unreadable row is not a list to screen against.
pub fn parse_csl_csv(text: &str) -> Result<Vec<ListEntry>, ScreeningError> {
    // The BOM is not part of the first column's name; a spreadsheet export adds one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut entries = Vec::new();
    let mut header_seen = false;
    loop {
        let start = reader.position().clone();
        let more = reader
            .read_record(&mut record)
            .map_err(|e| ScreeningError::Csv { line: start.line() as usize, message: e.to_string() })?;
        if !more {
            break;
        }
        let end = reader.position().byte() as usize;
        let (line, raw) = record_text(text, &record, &start, end);
        check_quoting(raw, &record, line)?;
        if !header_seen {
            check_header(&record, line)?;
            header_seen = true;
            continue;
        }
        if record.len() != CSL_COLUMNS.len() {
            return Err(ScreeningError::FieldCount { line, found: record.len(), expected: CSL_COLUMNS.len() });
        }
        entries.push(entry(&record, line)?);
    }
    if !header_seen {
        return Err(ScreeningError::Empty);
    }
    Ok(entries)
}

/// The record's own text and first line: the reader's position before a record can sit on blank
/// lines it then skips.
fn record_text<'t>(text: &'t str, record: &csv::StringRecord, before: &csv::Position, end: usize) -> (usize, &'t str) {
    let (line, start) = match record.position() {
        Some(p) => (p.line() as usize, p.byte() as usize),
        None => (before.line() as usize, before.byte() as usize),
    };
    let raw = text.get(start..end).unwrap_or_default();
    let skipped = raw.len() - raw.trim_start_matches(['\r', '\n']).len();
    let skipped_lines = raw[..skipped].matches('\n').count();
    (line + skipped_lines, &raw[skipped..])
}

/// Checks that the raw text of a record is exactly its fields written out, each either quoted (with
/// inner quotes doubled) or bare (with no quotes at all).
fn check_quoting(raw: &str, record: &csv::StringRecord, first_line: usize) -> Result<(), ScreeningError> {
    let mut rest = raw;
    let mut line = first_line;
    let mut last_column = 1;
    for (i, field) in record.iter().enumerate() {
        let column = i + 1;
        last_column = column;
        let bad = |problem| ScreeningError::Quoting { line, column, field: column_name(i), problem };
        if i > 0 {
            rest = rest.strip_prefix(',').ok_or_else(|| bad("text after the closing quote"))?;
        }
        if let Some(mut inner) = rest.strip_prefix('"') {
            for c in field.chars() {
                let next = if c == '"' { inner.strip_prefix("\"\"") } else { inner.strip_prefix(c) };
                inner = next.ok_or_else(|| {
                    bad("a quote inside a quoted field must be doubled (or the field's closing quote is missing)")
                })?;
            }
            rest = inner
                .strip_prefix('"')
                .ok_or_else(|| bad("quoted field is never closed (the quote runs to the end of the file)"))?;
        } else {
            if field.contains('"') {
                return Err(bad("quote inside an unquoted field; quote the field and double the quote"));
            }
            rest = rest.strip_prefix(field).ok_or_else(|| bad("field does not match its text"))?;
        }
        line += field.matches('\n').count();
    }
    if rest.chars().all(|c| c == '\r' || c == '\n') {
        Ok(())
    } else {
        Err(ScreeningError::Quoting {
            line,
            column: last_column,
            field: column_name(last_column - 1),
            problem: "text after the closing quote",
        })
    }
}

fn column_name(index: usize) -> &'static str {
    CSL_COLUMNS.get(index).copied().unwrap_or("extra column")
}

/// The header must be the 29 CSL columns in order: the fields are read by position, and a renamed
/// or shifted column would quietly screen against the wrong text.
fn check_header(record: &csv::StringRecord, line: usize) -> Result<(), ScreeningError> {
    for (i, expected) in CSL_COLUMNS.iter().enumerate() {
        let found = record.get(i);
        if found == Some(*expected) {
            continue;
        }
        let column = i + 1;
        let found = found.unwrap_or_default().to_owned();
        return Err(if record.iter().any(|h| h == *expected) {
            ScreeningError::UnexpectedColumn { line, column, expected, found }
        } else {
            ScreeningError::MissingColumn { line, column, expected, found }
        });
    }
    match record.get(CSL_COLUMNS.len()) {
        Some(extra) => {
            Err(ScreeningError::ExtraColumn { line, column: CSL_COLUMNS.len() + 1, found: extra.to_owned() })
        }
        None => Ok(()),
    }
}

fn entry(record: &csv::StringRecord, line: usize) -> Result<ListEntry, ScreeningError> {
    let field = |i: usize| record.get(i).unwrap_or_default();
    let name = field(NAME).trim();
    check_name(name, NAME, line)?;
    let alt_names: Vec<String> = split_list(field(ALT_NAMES)).map(str::to_owned).collect();
    for alias in &alt_names {
        check_name(alias, ALT_NAMES, line)?;
    }
    let mut countries: Vec<String> = Vec::new();
    for address in split_list(field(ADDRESSES)) {
        let Some(code) = address.rsplit(',').next().map(str::trim) else { continue };
        let iso2 = code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase());
        if iso2 && !countries.iter().any(|c| c == code) {
            countries.push(code.to_owned());
        }
    }
    Ok(ListEntry {
        id: field(ID).to_owned(),
        source: field(SOURCE).to_owned(),
        entry_type: field(TYPE).to_owned(),
        name: name.to_owned(),
        alt_names,
        programs: split_list(field(PROGRAMS)).map(str::to_owned).collect(),
        countries,
        line,
    })
}

/// A name that normalizes to nothing could never match, which would make its entry silently
/// unscreenable; refuse it instead.
fn check_name(name: &str, index: usize, line: usize) -> Result<(), ScreeningError> {
    let problem = if name.is_empty() {
        "name is empty".to_owned()
    } else if normalize(name).tokens.is_empty() {
        format!("{name:?} has no letters or digits to match on")
    } else {
        return Ok(());
    };
    Err(ScreeningError::BadName { line, column: index + 1, field: column_name(index), problem })
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(LIST_SEPARATOR).map(str::trim).filter(|s| !s.is_empty())
}
