//! The config folder: reads its files, parses them with line and column, and compiles them into an
//! immutable [`Policy`] plus gateway [`Settings`] and the policy's [`Expectation`]s. A config is
//! accepted whole or not at all; every problem found is reported at once, each naming its file,
//! line, key and what is wrong.

mod compile;
mod error;
mod files;
mod parse;
pub(crate) mod raw;
mod settings;

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use error::Source;
pub use error::{ConfigError, ConfigErrors};
pub use files::{FILES, File, Files};
use parse::parse;
pub use settings::{
    AdminSettings, AuditSettings, AuditSync, ClusterSettings, ClusterUrl, LimitSettings, OnAuditFailure,
    OutlierSettings, ReloadSettings, ReportDefaults, ServerSettings, Settings, UpstreamSettings,
};

use crate::policy::Policy;
use crate::policy::expect::Expectation;

/// The file of policy expectations: read and checked with the rest, but left out of the policy
/// version, since it changes no decision.
pub const EXPECTATIONS: &str = FILES.expectations.name;

/// The folder of further tenant files, beside `tenants.toml`: a provider's tenants split as its
/// systems keep them.
pub const TENANTS_DIR: &str = "tenants.d";

pub struct Config {
    /// The folder it was loaded from, for reloads.
    pub dir: PathBuf,
    pub settings: Settings,
    pub policy: Policy,
    /// Evaluated by `customs check` ([`crate::policy::expect::evaluate`]); the server ignores them.
    pub expectations: Vec<Expectation>,
}

/// Looks up environment variables for upstream credentials; a function so the demo and tests can
/// supply values without touching the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and compiles the config folder at `dir`.
pub fn load(dir: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
    load_after(dir, env, None)
}

/// As [`load`], for a reload after `previous`: what it is still valid for is not done again. The
/// tenants of a tenant file whose bytes are unchanged are not read again (while the files they
/// are compiled against are unchanged too), and names screened before against the same list are
/// not screened again.
pub fn load_after(dir: &Path, env: EnvLookup<'_>, previous: Option<&Policy>) -> Result<Config, ConfigErrors> {
    match load_with(dir, env, previous, true) {
        // A clash between a reused file's tenant and one read again is placed exactly only by
        // reading the reused file too.
        Err(Reload::Again) => {
            tracing::info!("A tenant file not read again has an error; reading every tenant file to place it.");
            load_with(dir, env, previous, false).map_err(Reload::into_errors)
        }
        loaded => loaded.map_err(Reload::into_errors),
    }
}

/// Why a load failed.
enum Reload {
    Failed(ConfigErrors),
    /// An error was found in a tenant file that was not read: loading with every file read again
    /// places it.
    Again,
}

impl Reload {
    fn into_errors(self) -> ConfigErrors {
        match self {
            Self::Failed(e) => e,
            // Only a load that kept some file asks to be made again, and the second reads every
            // file; should that change, this says so rather than pass for a load.
            Self::Again => ConfigErrors(vec![ConfigError {
                file: String::new(),
                position: None,
                key: String::new(),
                message: "a tenant file's error could not be placed".into(),
            }]),
        }
    }
}

fn load_with(dir: &Path, env: EnvLookup<'_>, previous: Option<&Policy>, reuse: bool) -> Result<Config, Reload> {
    let display = |name: &str| dir.join(name).display().to_string();
    let mut errors = Vec::new();
    let file_err = |file: String, message: String| ConfigError { file, position: None, key: String::new(), message };

    match fs::read_dir(dir) {
        Err(e) => {
            return Err(Reload::Failed(ConfigErrors(vec![file_err(
                dir.display().to_string(),
                format!("cannot read the config folder: {e}"),
            )])));
        }
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".toml") && !FILES.names().any(|f| f == name) {
                    let expected: Vec<&str> = FILES.names().collect();
                    errors.push(file_err(
                        display(&name),
                        format!("unexpected file; a config folder holds only {}", expected.join(", ")),
                    ));
                }
            }
        }
    }

    let tenant_files = tenant_files(dir, &mut errors);
    let surveyed = parse::survey(&tenant_files);
    let sources = FILES.map(|File { name, required }| match fs::read(dir.join(name)) {
        // Tenant files are read as a stream, by `parse::stream_tenants`.
        _ if name == FILES.tenants.name => Some(Source::new(display(name), String::new())),
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(Source::new(display(name), text)),
            Err(_) => {
                errors.push(file_err(display(name), "is not valid UTF-8".into()));
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Some(Source::new(display(name), String::new()))
        }
        Err(e) => {
            errors.push(file_err(display(name), format!("cannot be read: {e}")));
            None
        }
    });

    // The screening list is part of the policy (and of its version), at the path screening.toml
    // names, or its default name.
    let screening_file: Option<raw::ScreeningFile> = sources.screening.as_ref().and_then(|s| parse(s, &mut errors));
    let list_name =
        screening_file.as_ref().map_or_else(|| raw::ScreeningSettings::default().list, |f| f.screening.list.clone());
    let list = match fs::read(dir.join(list_name.get_ref())) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(Source::new(display(list_name.get_ref()), text)),
            Err(_) => {
                errors.push(file_err(display(list_name.get_ref()), "is not valid UTF-8".into()));
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(file_err(display(list_name.get_ref()), format!("cannot be read: {e}")));
            None
        }
    };

    // Another file failing still lets the tenant files' own errors be found, so one run lists them all.
    let fail = |mut errors: Vec<ConfigError>| {
        let at_most = surveyed.iter().map(|s| s.tables).sum();
        let ((), streamed) = parse::stream_tenants(&tenant_files, at_most, |b| b.for_each(drop));
        errors.extend(streamed.errors);
        Err(Reload::Failed(ConfigErrors(errors)))
    };
    let Files {
        gateway: Some(g),
        models: Some(m),
        country_groups: Some(c),
        jurisdictions: Some(j),
        tenants: Some(_),
        screening: Some(sc),
        ownership: Some(o),
        expectations: Some(e),
    } = sources
    else {
        return fail(errors);
    };
    let Some(screening_file) = screening_file else { return fail(errors) };
    let gateway = parse(&g, &mut errors);
    let models = parse(&m, &mut errors);
    let groups = parse(&c, &mut errors);
    let jurisdictions = parse(&j, &mut errors);
    let ownership = parse(&o, &mut errors);
    let expectations = parse(&e, &mut errors);
    let (Some(gateway), Some(models), Some(groups), Some(jurisdictions), Some(ownership), Some(expectations)) =
        (gateway, models, groups, jurisdictions, ownership, expectations)
    else {
        return fail(errors);
    };
    let before = digest([&g, &m, &c, &j].map(|s| s.text.as_str()));
    let after =
        digest([&sc.text, &o.text].into_iter().map(String::as_str).chain(list.as_ref().map(|l| l.text.as_str())));
    // What compiling a tenant reads besides its entry; screening's findings are each policy's own.
    let tenant_inputs = digest([&m, &c, &j, &o].map(|s| s.text.as_str()));
    let plan = plan(&tenant_files, &surveyed, previous.filter(|p| reuse && p.tenant_inputs == tenant_inputs));
    if previous.is_some() {
        tracing::debug!(read = plan.read.len(), kept = plan.reused.len(), "Tenant files surveyed.");
    }
    let parsed = compile::Parsed {
        gateway: (&g, gateway),
        models: (&m, models),
        groups: (&c, groups),
        jurisdictions: (&j, jurisdictions),
        screening: (&sc, screening_file),
        ownership: (&o, ownership),
        list,
        expectations: (&e, expectations),
        previous,
        plan: plan.steps,
        tenant_inputs,
    };
    let (compiled, streamed) =
        parse::stream_tenants(&plan.read, plan.at_most, |batches| compile::compile(parsed, batches, env));
    if !streamed.errors.is_empty() {
        // What the compiler made of the tenants that did parse would only add noise.
        errors.extend(streamed.errors);
        return Err(Reload::Failed(ConfigErrors(errors)));
    }
    for ((f, parsed), surveyed) in plan.read.iter().zip(&streamed.digests).zip(&plan.read_digests) {
        if parsed != surveyed {
            errors.push(file_err(f.name.clone(), "changed while it was being read; load again".into()));
        }
    }
    match compiled {
        Ok(mut c) if errors.is_empty() => {
            // Every file that can change a decision, in the order messages list them, the tenant
            // files by name and digest.
            let mut tenants = Sha256::new();
            for segment in c.policy.tenants.segments() {
                tenants.update((segment.relative.len() as u64).to_le_bytes());
                tenants.update(segment.relative.as_bytes());
                tenants.update(segment.digest);
            }
            let version = Sha256::new().chain_update(before).chain_update(tenants.finalize()).chain_update(after);
            c.policy.set_version(hex::encode(&version.finalize()[..8]));
            Ok(Config { dir: dir.to_owned(), settings: c.settings, policy: c.policy, expectations: c.expectations })
        }
        Ok(_) => Err(Reload::Failed(ConfigErrors(errors))),
        Err(more) if !plan.reused.is_empty() && more.iter().any(|e| plan.reused.contains(&e.file)) => {
            Err(Reload::Again)
        }
        Err(mut more) => {
            errors.append(&mut more);
            Err(Reload::Failed(ConfigErrors(errors)))
        }
    }
}

/// Which tenant files are read, and which reuse the last policy's segment.
struct TenantPlan {
    steps: Vec<compile::Plan>,
    /// The files to read, with their surveyed digests, and how many tenants they hold at most.
    read: Vec<parse::TenantFile>,
    read_digests: Vec<Option<[u8; 32]>>,
    at_most: usize,
    /// The files not read, by name.
    reused: std::collections::HashSet<String>,
}

/// Reuses each of `previous`'s segments whose file has the same name, place and bytes.
fn plan(files: &[parse::TenantFile], surveyed: &[parse::Survey], previous: Option<&Policy>) -> TenantPlan {
    let old: std::collections::HashMap<&str, &std::sync::Arc<crate::policy::TenantSegment>> =
        previous.map(|p| p.tenants.segments().iter().map(|s| (&*s.relative, s)).collect()).unwrap_or_default();
    let mut plan = TenantPlan {
        steps: Vec::with_capacity(files.len()),
        read: Vec::new(),
        read_digests: Vec::new(),
        at_most: 0,
        reused: Default::default(),
    };
    for (f, survey) in files.iter().zip(surveyed) {
        let same = old.get(f.relative.as_str()).filter(|s| *s.name == *f.name && Some(s.digest) == survey.digest);
        if let Some(segment) = same {
            plan.reused.insert(f.name.clone());
            plan.steps.push(compile::Plan::Reuse(std::sync::Arc::clone(segment)));
            continue;
        }
        plan.steps.push(compile::Plan::Read {
            index: plan.read.len(),
            name: f.name.clone(),
            relative: f.relative.clone(),
            digest: survey.digest.unwrap_or_default(),
        });
        plan.read.push(f.clone());
        plan.read_digests.push(survey.digest);
        plan.at_most += survey.tables;
    }
    plan
}

/// A digest of texts, each with its length, so no two lists of texts share one.
fn digest<'a>(texts: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    let mut h = Sha256::new();
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    h.finalize().into()
}

/// The folder's tenant files: `tenants.toml`, then every `*.toml` of `tenants.d/` by name. Either
/// may be missing, not both.
fn tenant_files(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<parse::TenantFile> {
    let display = |p: &Path| p.display().to_string();
    let mut files = Vec::new();
    let main = dir.join(FILES.tenants.name);
    let folder = dir.join(TENANTS_DIR);
    if main.exists() || !folder.is_dir() {
        files.push(parse::TenantFile { name: display(&main), path: main, relative: FILES.tenants.name.into() });
    }
    if folder.is_dir() {
        match fs::read_dir(&folder) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                paths.sort();
                files.extend(paths.into_iter().map(|path| {
                    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    parse::TenantFile { name: display(&path), relative: format!("{TENANTS_DIR}/{file}"), path }
                }));
            }
            Err(e) => errors.push(ConfigError {
                file: display(&folder),
                position: None,
                key: String::new(),
                message: format!("cannot be read: {e}"),
            }),
        }
    }
    files
}

/// A copy of the example config folder, for a unit test to edit and load again.
#[cfg(test)]
pub(crate) fn example_copy() -> tempfile::TempDir {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let dir = tempfile::TempDir::new().expect("a temporary folder");
    for f in fs::read_dir(&example).expect("the example config").flatten() {
        fs::copy(f.path(), dir.path().join(f.file_name())).expect("a copy of an example file");
    }
    dir
}
