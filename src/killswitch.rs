//! The kill switch's state: tenants suspended by an operator at run time, outside the config
//! folder. Kept in one JSON file replaced atomically (write a temporary file, fsync, rename, fsync
//! the folder), so a crash leaves either the old set or the new one, and read at start-up: a
//! suspension survives restarts and reloads until it is lifted.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum KillSwitchError {
    #[error("{path}: cannot read the kill-switch state: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: the kill-switch state is not valid: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: cannot save the kill-switch state: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suspension {
    pub reason: String,
    /// Who asked, as the operator stated it.
    pub by: String,
    /// RFC 3339 time it took effect.
    pub at: String,
}

impl Suspension {
    /// The rule text used in audit records and `explain`.
    pub fn describe(&self) -> String {
        format!("kill switch: suspended by {} at {}: {}", self.by, self.at, self.reason)
    }
}

/// Suspended tenants by id. Ids that the current config does not know are kept (the tenant may
/// come back in a later config) but match nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suspensions {
    suspended: BTreeMap<String, Suspension>,
    /// Cluster mode: the cluster epoch this set was at, so a store that lost its data can be
    /// given it back ([`crate::cluster`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
}

impl Suspensions {
    /// Reads the state file; a missing file is an empty set, anything unreadable is an error
    /// (starting without knowing who is suspended would unsuspend them).
    pub fn load(path: &Path) -> Result<Self, KillSwitchError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| KillSwitchError::Parse { path: path.to_owned(), source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(KillSwitchError::Read { path: path.to_owned(), source }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), KillSwitchError> {
        let err = |source| KillSwitchError::Write { path: path.to_owned(), source };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(err)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| err(io::Error::other(e)))?;
        bytes.push(b'\n');
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(err)?;
        fs::rename(&tmp, path).map_err(err)?;
        // The rename is durable only once the folder is.
        File::open(&dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }

    /// A set read from the cluster store at `epoch`.
    pub fn from_cluster(suspended: BTreeMap<String, Suspension>, epoch: u64) -> Self {
        Self { suspended, epoch: Some(epoch) }
    }

    /// The cluster epoch this set was at; a set saved outside cluster mode has none.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    pub fn get(&self, tenant: &str) -> Option<&Suspension> {
        self.suspended.get(tenant)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Suspension)> {
        self.suspended.iter()
    }

    pub fn len(&self) -> usize {
        self.suspended.len()
    }

    pub fn is_empty(&self) -> bool {
        self.suspended.is_empty()
    }

    /// A copy with `tenant` suspended (replacing an earlier suspension of it).
    pub fn with(&self, tenant: &str, s: Suspension) -> Self {
        let mut next = self.clone();
        next.suspended.insert(tenant.to_owned(), s);
        next
    }

    /// A copy with `tenant` reinstated, and whether it was suspended.
    pub fn without(&self, tenant: &str) -> (Self, bool) {
        let mut next = self.clone();
        let was = next.suspended.remove(tenant).is_some();
        (next, was)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn save_and_load_round_trip_and_missing_is_empty() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("state/suspensions.json");
        assert!(Suspensions::load(&path).unwrap().is_empty());
        let s = Suspensions::default().with(
            "demo-us",
            Suspension { reason: "misuse".into(), by: "alice".into(), at: "2026-11-28T00:00:00Z".into() },
        );
        s.save(&path).unwrap();
        assert_eq!(Suspensions::load(&path).unwrap(), s);
        let (empty, was) = s.without("demo-us");
        assert!(was && empty.is_empty());
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_not_an_empty_set() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("s.json");
        fs::write(&path, b"{\"suspended\": ").unwrap();
        assert!(matches!(Suspensions::load(&path), Err(KillSwitchError::Parse { .. })));
    }
}
