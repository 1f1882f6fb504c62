//! The verdict table: what each jurisdiction version's rules say about each model, resolved at
//! load. Config fills it a row at a time through [`TableBuilder`] and [`Policy::decide`] reads it
//! through [`VerdictTable`], so how rows, cells and endpoint runs are laid out is known only here.
//!
//! [`Policy::decide`]: super::Policy::decide

use super::{EndpointIdx, ModelIdx, RuleId};

/// One row per jurisdiction version, one cell per model in catalog order, and the runs of
/// endpoints the cells point into.
pub struct VerdictTable {
    models: usize,
    cells: Box<[RegionVerdict]>,
    endpoints: Box<[EndpointIdx]>,
}

/// Where a jurisdiction version's verdicts are in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row(u32);

/// What a jurisdiction's rules say about one model, before tenant-specific checks. Kept small,
/// since a policy holds one per jurisdiction version and model. The threshold, declaration and
/// residency rules are the version's; only the pattern rule varies by model.
pub struct RegionVerdict {
    /// The allow pattern that matched, or the deny pattern (or the allow list) that refused.
    pattern_rule: RuleId,
    flags: u8,
    endpoints_len: u8,
    endpoints_start: u32,
}

/// One cell as config resolves it, before the table encodes it.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    /// The allow pattern that matched, or the deny pattern (or the allow list) that refused.
    pub pattern_rule: RuleId,
    pub denied_by_pattern: bool,
    pub over_threshold: bool,
    pub needs_declaration: bool,
}

/// Fills a [`VerdictTable`]. Every row gets exactly one cell per model, so no caller can shift
/// the cells of later rows.
pub struct TableBuilder {
    models: usize,
    rows: u32,
    cells: Vec<RegionVerdict>,
    endpoints: Vec<EndpointIdx>,
}

/// The endpoints one cell allows, as they are added.
pub struct EndpointRun<'t> {
    endpoints: &'t mut Vec<EndpointIdx>,
    start: usize,
}

// === impl VerdictTable ===

impl VerdictTable {
    /// The verdict of `row` on model `m`.
    pub fn get(&self, row: Row, m: ModelIdx) -> Option<&RegionVerdict> {
        let m = m as usize;
        if m >= self.models {
            return None;
        }
        self.cells.get(row.0 as usize * self.models + m)
    }

    /// The endpoints a verdict allows, in catalog order.
    pub fn endpoints(&self, v: &RegionVerdict) -> &[EndpointIdx] {
        let start = v.endpoints_start as usize;
        self.endpoints.get(start..start + usize::from(v.endpoints_len)).unwrap_or_default()
    }
}

// === impl RegionVerdict ===

impl RegionVerdict {
    const DENIED_BY_PATTERN: u8 = 1;
    const OVER_THRESHOLD: u8 = 2;
    const NEEDS_DECLARATION: u8 = 4;

    pub fn pattern_rule(&self) -> RuleId {
        self.pattern_rule
    }

    pub fn denied_by_pattern(&self) -> bool {
        self.has(Self::DENIED_BY_PATTERN)
    }

    pub fn over_threshold(&self) -> bool {
        self.has(Self::OVER_THRESHOLD)
    }

    pub fn needs_declaration(&self) -> bool {
        self.has(Self::NEEDS_DECLARATION)
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

// === impl Cell ===

impl Cell {
    /// Every model refused by one rule, such as an embargo.
    pub fn denied(rule: RuleId) -> Self {
        Self { pattern_rule: rule, denied_by_pattern: true, over_threshold: false, needs_declaration: false }
    }
}

// === impl TableBuilder ===

impl TableBuilder {
    pub fn new(models: usize) -> Self {
        Self { models, rows: 0, cells: Vec::new(), endpoints: Vec::new() }
    }

    /// Adds one jurisdiction version's row: `cell` is called for each model index in catalog
    /// order, and adds the endpoints that model may use to the run it is given.
    pub fn push_row(&mut self, mut cell: impl FnMut(usize, &mut EndpointRun<'_>) -> Cell) -> Row {
        let row = Row(self.rows);
        self.rows += 1;
        for m in 0..self.models {
            let start = self.endpoints.len();
            let mut run = EndpointRun { endpoints: &mut self.endpoints, start };
            let c = cell(m, &mut run);
            let flag = |set: bool, flag: u8| if set { flag } else { 0 };
            self.cells.push(RegionVerdict {
                pattern_rule: c.pattern_rule,
                flags: flag(c.denied_by_pattern, RegionVerdict::DENIED_BY_PATTERN)
                    | flag(c.over_threshold, RegionVerdict::OVER_THRESHOLD)
                    | flag(c.needs_declaration, RegionVerdict::NEEDS_DECLARATION),
                endpoints_len: u8::try_from(self.endpoints.len() - start).unwrap_or(u8::MAX),
                endpoints_start: start as u32,
            });
        }
        row
    }

    pub fn build(self) -> VerdictTable {
        VerdictTable { models: self.models, cells: self.cells.into(), endpoints: self.endpoints.into() }
    }
}

// === impl EndpointRun ===

impl EndpointRun<'_> {
    /// A cell holds at most `u8::MAX` endpoints; config refuses a model with more, so any beyond
    /// are never reached.
    pub fn extend(&mut self, endpoints: impl IntoIterator<Item = EndpointIdx>) {
        let room = usize::from(u8::MAX) - (self.endpoints.len() - self.start);
        self.endpoints.extend(endpoints.into_iter().take(room));
    }
}
