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
    /// Byte offset of each line's start, so a position is a binary search, not a scan.
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: String, text: String) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { name, text, line_starts }
    }

    pub fn position(&self, span: &Range<usize>) -> (usize, usize) {
        let start = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= start);
        let line_start = self.line_starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let col = self.text.get(line_start..start).map_or(0, |s| s.chars().count()) + 1;
        (line.max(1), col)
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
