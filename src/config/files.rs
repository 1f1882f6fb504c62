//! The files a config folder holds, by name: one field per file, so code that reads, hashes or
//! parses them says which file it means instead of where it sits in a list.

/// One value per file of a config folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Files<T> {
    pub gateway: T,
    pub models: T,
    pub country_groups: T,
    pub jurisdictions: T,
    pub tenants: T,
    pub screening: T,
    pub ownership: T,
    pub expectations: T,
}

/// A config file's name, and whether a folder must hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File {
    pub name: &'static str,
    pub required: bool,
}

/// The files a config folder may hold: `gateway.toml`, `screening.toml`, `ownership.toml` and
/// `expectations.toml` are optional, the policy files are not. The screening list itself (CSV) is named in
/// `screening.toml`.
pub const FILES: Files<File> = Files {
    gateway: File { name: "gateway.toml", required: false },
    models: File { name: "models.toml", required: true },
    country_groups: File { name: "country-groups.toml", required: true },
    jurisdictions: File { name: "jurisdictions.toml", required: true },
    tenants: File { name: "tenants.toml", required: true },
    screening: File { name: "screening.toml", required: false },
    ownership: File { name: "ownership.toml", required: false },
    expectations: File { name: "expectations.toml", required: false },
};

// === impl Files ===

impl<T> Files<T> {
    /// Every file's value, in the order messages list the files.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        [
            &self.gateway,
            &self.models,
            &self.country_groups,
            &self.jurisdictions,
            &self.tenants,
            &self.screening,
            &self.ownership,
            &self.expectations,
        ]
        .into_iter()
    }

    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Files<U> {
        Files {
            gateway: f(self.gateway),
            models: f(self.models),
            country_groups: f(self.country_groups),
            jurisdictions: f(self.jurisdictions),
            tenants: f(self.tenants),
            screening: f(self.screening),
            ownership: f(self.ownership),
            expectations: f(self.expectations),
        }
    }
}

impl Files<File> {
    /// The file names, in the order messages list them.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.iter().map(|f| f.name)
    }
}
