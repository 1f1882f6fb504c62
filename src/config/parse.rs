//! TOML parsing with errors placed in the file: a config file is parsed whole, except a large
//! tenant file, which is parsed in slices of whole `[[tenants]]` tables on every core, so a
//! million tenants parse in linear time and the parser's transient tree never holds more than a
//! slice.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::error::{ConfigError, Source};
use super::raw;

/// Below this size a tenant file is parsed whole.
const SLICED_BYTES: usize = 256 * 1024;
const TENANTS_PER_SLICE: usize = 500;

pub(super) fn parse<T: DeserializeOwned>(src: &Source, errors: &mut Vec<ConfigError>) -> Option<T> {
    match toml::from_str::<T>(&src.text) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(src.error(e.span().as_ref(), "", e.message().trim_end()));
            None
        }
    }
}

/// Parses a tenant file. A slice starts at a line that starts with `[[tenants]]` and is parsed on
/// its own; the spans of what it holds, and of its errors, are moved by the slice's offset, so
/// every line and column is the file's own. A line that starts with `[[tenants]]` inside a
/// multi-line string would cut the string; the slice before it then fails to parse, and a failed
/// slice holding a multi-line string sends the whole file to the ordinary parse, which reports
/// the error as a reader expects it.
pub(super) fn parse_tenants(src: &Source, errors: &mut Vec<ConfigError>) -> Option<raw::TenantsFile> {
    let text = src.text.as_str();
    if text.len() < SLICED_BYTES {
        return parse(src, errors);
    }
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("[[tenants]]") {
            starts.push(offset);
        }
        offset += line.len();
    }
    // The first slice also takes whatever precedes the first table, so anything there is parsed
    // with the tables it would apply to.
    let mut bounds: Vec<usize> = starts.iter().step_by(TENANTS_PER_SLICE).copied().collect();
    match bounds.first_mut() {
        Some(first) => *first = 0,
        None => return parse(src, errors),
    }
    bounds.push(text.len());
    let slices: Vec<Range<usize>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
    let workers = std::thread::available_parallelism().map_or(1, usize::from).min(slices.len()).max(1);
    let per_worker = slices.len().div_ceil(workers);
    let results: Vec<Result<Vec<raw::RawTenant>, SliceError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = slices
            .chunks(per_worker)
            .map(|group| scope.spawn(move || group.iter().map(|r| parse_slice(text, r.clone())).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec![Err(SliceError::Panicked)])).collect()
    });
    let mut tenants = Vec::with_capacity(starts.len());
    let mut failed = Vec::new();
    for (result, range) in results.into_iter().zip(&slices) {
        match result {
            Ok(mut t) => tenants.append(&mut t),
            Err(e) => failed.push((e, range)),
        }
    }
    if failed.is_empty() {
        return Some(raw::TenantsFile { tenants });
    }
    drop(tenants);
    let cut_string = |r: &Range<usize>| text[r.clone()].contains("\"\"\"") || text[r.clone()].contains("'''");
    if failed.iter().any(|(e, r)| matches!(e, SliceError::Panicked) || cut_string(r)) {
        return parse(src, errors);
    }
    for (e, _) in failed {
        if let SliceError::Toml { span, message } = e {
            errors.push(src.error(span.as_ref(), "", message));
        }
    }
    None
}

enum SliceError {
    Toml { span: Option<Range<usize>>, message: String },
    Panicked,
}

fn parse_slice(text: &str, range: Range<usize>) -> Result<Vec<raw::RawTenant>, SliceError> {
    let at = range.start;
    let error = |e: toml::de::Error, shift: usize| SliceError::Toml {
        span: e.span().map(|s| s.start + shift..s.end + shift),
        message: e.message().trim_end().to_owned(),
    };
    let table = DeTable::parse(&text[range]).map_err(|e| error(e, at))?;
    let span = table.span();
    let table = shift_table(table.into_inner(), at);
    let de = toml::de::Deserializer::from(Spanned::new(span.start + at..span.end + at, table));
    // The tree's spans are the file's already.
    let file: raw::TenantsFile = serde::Deserialize::deserialize(de).map_err(|e| error(e, 0))?;
    Ok(file.tenants)
}

fn shift_table(table: DeTable<'_>, at: usize) -> DeTable<'_> {
    table.into_iter().map(|(k, v)| (shift(k, at, |k| k), shift(v, at, |v| shift_value(v, at)))).collect()
}

fn shift_value(value: DeValue<'_>, at: usize) -> DeValue<'_> {
    match value {
        DeValue::Table(t) => DeValue::Table(shift_table(t, at)),
        DeValue::Array(mut a) => {
            shift_array(&mut a, at);
            DeValue::Array(a)
        }
        other => other,
    }
}

/// In place, so the array keeps what the parser knows of it (whether it is an array of tables).
fn shift_array(array: &mut DeArray<'_>, at: usize) {
    for item in array.iter_mut() {
        let taken = std::mem::replace(item, Spanned::new(0..0, DeValue::Boolean(false)));
        *item = shift(taken, at, |v| shift_value(v, at));
    }
}

fn shift<T>(s: Spanned<T>, at: usize, inner: impl FnOnce(T) -> T) -> Spanned<T> {
    let span = s.span();
    Spanned::new(span.start + at..span.end + at, inner(s.into_inner()))
}
