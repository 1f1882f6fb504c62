//! Config errors: each names the file, the line and column, the key and what is wrong, so a
//! compliance editor can go straight to the entry.

use std::fmt;
use std::ops::Range;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted key path, e.g. `tenants[2] (acme).jurisdiction`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one load; a config is accepted only when this is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A file's text, kept so byte spans can be turned into line and column.
pub struct Source {
    pub name: String,
    pub text: String,
    /// The file line (0-based) of the text's first line: a slice of a tenant file knows where it
    /// sits.
    pub first_line: usize,
    /// Byte offset of each line's start, so a position is a binary search, not a scan.
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: String, text: String) -> Self {
        Self::at_line(name, text, 0)
    }

    pub fn at_line(name: String, text: String, first_line: usize) -> Self {
        let line_starts =
            std::iter::once(0).chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1)).collect();
        Self { name, text, first_line, line_starts }
    }

    /// The 1-based line of a span's start, without the column's count of characters.
    pub fn line(&self, span: &Range<usize>) -> usize {
        let start = span.start.min(self.text.len());
        self.line_starts.partition_point(|&s| s <= start).max(1) + self.first_line
    }

    pub fn position(&self, span: &Range<usize>) -> (usize, usize) {
        let start = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= start);
        let line_start = self.line_starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let col = self.text.get(line_start..start).map_or(0, |s| s.chars().count()) + 1;
        (line.max(1) + self.first_line, col)
    }

    pub fn error(
        &self,
        span: Option<&Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.name.clone(),
            position: span.map(|s| self.position(s)),
            key: key.into(),
            message: message.into(),
        }
    }
}
