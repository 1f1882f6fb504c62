//! Calendar days and inclusive day ranges for effective dates and expiry: a plain day count, so
//! comparing against today is one integer compare on the hot path.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

impl Day {
    /// Open ends of a [`Window`]: before and after every date a config can name. Never displayed.
    pub const MIN: Day = Day(i64::MIN);
    pub const MAX: Day = Day(i64::MAX);

    pub fn today() -> Self {
        Self::of(SystemTime::now())
    }

    /// The UTC day `t` falls on.
    pub fn of(t: SystemTime) -> Self {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        Day(secs.div_euclid(86_400))
    }

    /// From a proleptic Gregorian date; `None` if the date does not exist.
    pub fn from_ymd(year: i64, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // Howard Hinnant's days_from_civil.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(Day(era * 146_097 + doe - 719_468))
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.splitn(3, '-');
        let y = it.next()?.parse().ok()?;
        let m = it.next()?.parse().ok()?;
        let d = it.next()?.parse().ok()?;
        Self::from_ymd(y, m, d)
    }

    /// The next day; `None` for [`Day::MAX`].
    pub fn succ(self) -> Option<Self> {
        self.0.checked_add(1).map(Day)
    }

    /// The previous day; `None` for [`Day::MIN`].
    pub fn pred(self) -> Option<Self> {
        self.0.checked_sub(1).map(Day)
    }

    pub fn to_ymd(self) -> (i64, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d)
    }
}

/// The day requests are decided as of: the UTC day each one arrives on, or one fixed day
/// (`customs serve --at`), so that a demo, a test or a replay can see a staged change before or
/// after it binds without waiting for the calendar. Only the policy reads it: timestamps, daily
/// quotas and the audit trail keep the real time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DayClock {
    #[default]
    Utc,
    Fixed(Day),
}

impl DayClock {
    /// The policy day for a request that arrived at `t`.
    pub fn day_of(self, t: SystemTime) -> Day {
        match self {
            Self::Utc => Day::of(t),
            Self::Fixed(day) => day,
        }
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// The days something is in force: from `from` through `until`, both inclusive. An open end is
/// [`Day::MIN`] or [`Day::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Day,
    pub until: Day,
}

impl Window {
    pub const ALWAYS: Window = Window { from: Day::MIN, until: Day::MAX };

    pub fn contains(self, day: Day) -> bool {
        self.from <= day && day <= self.until
    }

    pub fn overlaps(self, other: Window) -> bool {
        self.from <= other.until && other.from <= self.until
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from == Day::MIN, self.until == Day::MAX) {
            (true, true) => f.write_str("on every day"),
            (false, true) => write!(f, "from {}", self.from),
            (true, false) => write!(f, "through {}", self.until),
            (false, false) => write!(f, "from {} through {}", self.from, self.until),
        }
    }
}
