//! The compiled policy against a reference evaluator. proptest writes small random config folders
//! (models, country groups, dated jurisdiction versions, tenants with allowlists, suspensions and
//! declarations, a screening list with clearances), loads each through `config::load`, the loader
//! `customs check` and the server use, and asks `Policy::decide` about every tenant, model name,
//! purpose and day on which some date in the config takes effect. The reference below reads only
//! the generated inputs, never the compiled policy, and follows the README's evaluation order as
//! plainly as it can be written, so a verdict table, a timeline or a bitset built wrong at load
//! shows up as a disagreement.
//!
//! Left out, because `decide` never reads them: limits (rate, tokens, concurrency, compute quota),
//! the admin kill switch and `[cluster] fail_closed` (runtime state the gateway checks apart from
//! `decide`), key digests and certificates (authentication comes before the policy). Screening is
//! generated only with exact name matches and dissimilar names, since re-deriving the fuzzy score
//! here would copy the screener rather than check it.

use std::collections::BTreeSet;
use std::path::Path;

use customs::config;
use customs::policy::{Day, Denial, Policy, Verdict};
use customs::route::Operation;
use proptest::prelude::*;
use proptest::sample::Index;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

/// Ids and aliases are drawn from here; names not drawn are asked about too, as unknown ones.
/// Shared prefixes make the generated globs overlap, and one name holds a `/`.
const NAMES: [&str; 16] = [
    "gpt-4",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4o-2024",
    "llama-3",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "meta/llama-3",
    "qwen-7b",
    "qwen-72b",
    "claude-3",
    "claude-3-5",
    "o1",
    "o1-mini",
    "emb-small",
    "emb-large",
];
/// Training compute of models, and the lines drawn against it: shared values, so that a model
/// exactly on a line (denied: the line is "at or above") comes up often.
const FLOPS: [f64; 9] = [0.0, 1e22, 1e23, 5e23, 1e24, 1e25, 3.8e25, 1e26, 3e26];
const LINES: [f64; 6] = [1e23, 1e24, 1e25, 3.8e25, 1e26, f64::INFINITY];
const DECLARATION_LINES: [f64; 5] = [0.0, 1e23, 1e24, 1e25, 1e26];
const RESIDENCIES: [&str; 5] = ["us-east", "us-west", "eu-west", "cn-north", "ap-south"];
const COUNTRIES: [&str; 8] = ["US", "DE", "FR", "CN", "MO", "IR", "JP", "BR"];
const PURPOSES: [&str; 3] = ["translation", "support", "research"];
/// Asked as a purpose, never declared.
const UNDECLARED: &str = "undeclared";
const OPENAI_OPERATIONS: [&str; 4] = ["chat", "completions", "embeddings", "responses"];
/// Tenants' legal names, and the names a screening list may hold: far enough apart that only an
/// exact match scores above the blocking threshold.
const LEGAL_NAMES: [&str; 5] =
    ["Quorvane Optics", "Zebulon Freightways", "Marlowe Textiles", "Ishkara Mining", "Pellucid Bakeries"];
const LIST_SOURCE: &str = "Generated Test List";

/// Days in the config are offsets from this one.
fn day(offset: i64) -> Day {
    let base = Day::from_ymd(2026, 1, 1).unwrap();
    Day(base.0 + offset)
}

// --- the generated inputs ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ConfigIn {
    models: Vec<ModelIn>,
    jurisdictions: Vec<JurisdictionIn>,
    tenants: Vec<TenantIn>,
    /// Per legal name: whether the screening list holds it (as entry `E{index}`).
    listed: Vec<bool>,
}

#[derive(Debug, Clone)]
struct ModelIn {
    id: &'static str,
    aliases: Vec<&'static str>,
    training_flops: f64,
    anthropic: bool,
    operations: Option<Vec<&'static str>>,
    /// One endpoint per entry, in config order.
    residencies: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct JurisdictionIn {
    id: String,
    countries: Vec<&'static str>,
    /// Also covers every country no other jurisdiction does.
    star: bool,
    /// Written as a country group holding these countries and one more that is excluded again.
    via_group: Option<Option<&'static str>>,
    /// In date order, without overlap.
    versions: Vec<VersionIn>,
}

#[derive(Debug, Clone)]
struct VersionIn {
    window: Window,
    /// `None`: embargoed.
    rules: Option<Rules>,
    /// Writes `embargoed = false`, which must mean the same as leaving it out.
    says_not_embargoed: bool,
}

#[derive(Debug, Clone)]
struct Rules {
    max_training_flops: f64,
    allow: Vec<String>,
    deny: Vec<String>,
    declaration: Requirement,
    residencies: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Requirement {
    Always,
    Never,
    AtOrAboveFlops(f64),
}

#[derive(Debug, Clone)]
struct TenantIn {
    id: String,
    legal_name: usize,
    country: &'static str,
    jurisdiction: usize,
    status_suspended: bool,
    suspension: Option<Window>,
    allow: Option<Vec<String>>,
    declaration: Option<DeclarationIn>,
    /// A reviewer cleared it against the list entry of its legal name.
    cleared: bool,
}

#[derive(Debug, Clone)]
struct DeclarationIn {
    effective_from: Option<i64>,
    expires: i64,
    purposes: Vec<&'static str>,
}

/// Inclusive day offsets; an open end is `None`.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Option<i64>,
    until: Option<i64>,
}

impl Window {
    fn contains(self, d: i64) -> bool {
        self.from.is_none_or(|f| f <= d) && self.until.is_none_or(|u| d <= u)
    }
}

// --- the generator ----------------------------------------------------------------------------

/// How to make a glob from a name picked from a list, so that every pattern matches at least
/// the name it came from (the loader refuses one that matches nothing) and often others.
#[derive(Debug, Clone)]
struct Recipe {
    name: Index,
    kind: u8,
    at: Index,
    other: Index,
}

impl Recipe {
    fn pattern(&self, names: &[&str]) -> String {
        let name = *self.name.get(names);
        let at = self.at.index(name.len());
        match self.kind {
            0 => name.to_owned(),
            1 => format!("{}*", &name[..at]),
            2 => format!("{}?{}", &name[..at], &name[at + 1..]),
            3 => format!("{{{name},{}}}", self.other.get(names)),
            4 => format!("*{}", &name[at..]),
            _ => "*".to_owned(),
        }
    }
}

prop_compose! {
    fn recipe()(name in any::<Index>(), kind in 0u8..6, at in any::<Index>(), other in any::<Index>()) -> Recipe {
        Recipe { name, kind, at, other }
    }
}

/// A window starting at `start`; each end may be left open.
fn window(start: i64, len: i64, open_start: bool, open_end: bool) -> Window {
    Window { from: (!open_start).then_some(start), until: (!open_end).then_some(start + len) }
}

type ModelRaw = (usize, bool, Option<Vec<&'static str>>, Vec<usize>, usize);

fn model_raw() -> impl Strategy<Value = ModelRaw> {
    (
        0..FLOPS.len(),
        prop::bool::weighted(0.2),
        prop::option::of(prop::sample::subsequence(OPENAI_OPERATIONS.to_vec(), 1..=4)),
        prop::collection::vec(0..RESIDENCIES.len(), 1..=3),
        0usize..=2,
    )
}

#[derive(Debug, Clone)]
struct VersionRaw {
    gap: i64,
    len: i64,
    embargoed: bool,
    says_not_embargoed: bool,
    line: usize,
    allow: Vec<Recipe>,
    deny: Vec<Recipe>,
    requirement: u8,
    declaration_line: usize,
    residencies: Vec<Recipe>,
}

prop_compose! {
    fn version_raw()(
        // Mostly versions that follow each other, without a gap in which nothing is in force.
        gap in prop_oneof![3 => Just(0i64), 1 => 1i64..4],
        len in 0i64..6,
        embargoed in prop::bool::weighted(0.1),
        says_not_embargoed in any::<bool>(),
        line in 0..LINES.len(),
        allow in prop_oneof![1 => Just(vec![]), 6 => prop::collection::vec(recipe(), 1..=3)],
        deny in prop_oneof![2 => Just(vec![]), 1 => prop::collection::vec(recipe(), 1..=2)],
        requirement in 0u8..3,
        declaration_line in 0..DECLARATION_LINES.len(),
        residencies in prop_oneof![1 => Just(vec![]), 6 => prop::collection::vec(recipe(), 1..=2)],
    ) -> VersionRaw {
        VersionRaw {
            gap, len, embargoed, says_not_embargoed, line, allow, deny, requirement, declaration_line, residencies,
        }
    }
}

/// (written through a country group, versions, first version open at the start, last open at
/// the end)
type JurisdictionRaw = (bool, Vec<VersionRaw>, bool, bool);

fn jurisdiction_raw() -> impl Strategy<Value = JurisdictionRaw> {
    (any::<bool>(), prop::collection::vec(version_raw(), 1..=3), prop::bool::weighted(0.7), prop::bool::weighted(0.7))
}

#[derive(Debug, Clone)]
struct TenantRaw {
    legal_name: usize,
    jurisdiction: Index,
    country: Index,
    status_suspended: bool,
    suspension: Option<(i64, i64, bool, bool)>,
    allow: Option<Vec<Recipe>>,
    declaration: Option<(Option<i64>, i64, Vec<&'static str>)>,
    cleared: bool,
}

prop_compose! {
    fn tenant_raw()(
        legal_name in 0..LEGAL_NAMES.len(),
        jurisdiction in any::<Index>(),
        country in any::<Index>(),
        status_suspended in prop::bool::weighted(0.05),
        suspension in prop::option::weighted(
            0.2,
            (0i64..20, 0i64..8, prop::bool::weighted(0.25), prop::bool::weighted(0.25)),
        ),
        allow in prop::option::weighted(0.3, prop::collection::vec(recipe(), 0..=2)),
        declaration in prop::option::weighted(
            0.7,
            (prop::option::of(0i64..20), 0i64..20, prop::sample::subsequence(PURPOSES.to_vec(), 1..=3)),
        ),
        cleared in any::<bool>(),
    ) -> TenantRaw {
        TenantRaw { legal_name, jurisdiction, country, status_suspended, suspension, allow, declaration, cleared }
    }
}

fn config_in() -> impl Strategy<Value = ConfigIn> {
    (
        Just(NAMES.to_vec()).prop_shuffle(),
        prop::collection::vec(model_raw(), 1..=5),
        prop::collection::vec(jurisdiction_raw(), 1..=3),
        prop::collection::vec(0usize..4, COUNTRIES.len()),
        prop::option::of(any::<Index>()),
        prop::collection::vec(tenant_raw(), 1..=4),
        prop::collection::vec(prop::bool::weighted(0.1), LEGAL_NAMES.len()),
    )
        .prop_map(|(names, models, jurisdictions, owners, star, tenants, listed)| {
            build(names, models, jurisdictions, owners, star, tenants, listed)
        })
}

/// Resolves the raw draws into a config the loader must accept: names unique, every pattern
/// matching something, every jurisdiction covering a country, every tenant's country in its
/// jurisdiction, every date range in order and versions without overlap.
fn build(
    names: Vec<&'static str>,
    models: Vec<ModelRaw>,
    jurisdictions: Vec<JurisdictionRaw>,
    owners: Vec<usize>,
    star: Option<Index>,
    tenants: Vec<TenantRaw>,
    listed: Vec<bool>,
) -> ConfigIn {
    let mut spare = names[models.len()..].iter().copied();
    let models: Vec<ModelIn> = models
        .into_iter()
        .zip(&names)
        .map(|((flops, anthropic, operations, residencies, aliases), &id)| ModelIn {
            id,
            aliases: spare.by_ref().take(aliases).collect(),
            training_flops: FLOPS[flops],
            anthropic,
            operations: operations.map(|ops| if anthropic { vec!["messages"] } else { ops }),
            residencies: residencies.into_iter().map(|r| RESIDENCIES[r]).collect(),
        })
        .collect();
    let ids: Vec<&str> = models.iter().map(|m| m.id).collect();
    let all_names: Vec<&str> = models.iter().flat_map(|m| std::iter::once(m.id).chain(m.aliases.clone())).collect();
    let labels: Vec<&str> =
        models.iter().flat_map(|m| m.residencies.clone()).collect::<BTreeSet<_>>().into_iter().collect();

    // The first jurisdictions take the first countries, so none covers nothing.
    let n = jurisdictions.len();
    let owner = |c: usize| if c < n { Some(c) } else { Some(owners[c]).filter(|&o| o < n) };
    let star = star.map(|s| s.index(n));
    let jurisdictions: Vec<JurisdictionIn> = jurisdictions
        .into_iter()
        .enumerate()
        .map(|(k, (via_group, versions, open_start, open_end))| {
            let countries: Vec<&str> =
                (0..COUNTRIES.len()).filter(|&c| owner(c) == Some(k)).map(|c| COUNTRIES[c]).collect();
            let excluded = (0..COUNTRIES.len()).find(|&c| owner(c) != Some(k)).map(|c| COUNTRIES[c]);
            let count = versions.len();
            let mut next = 0;
            let versions = versions
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let from = next + v.gap;
                    next = from + v.len + 1;
                    let window = window(from, v.len, open_start && i == 0, open_end && i + 1 == count);
                    let rules = (!v.embargoed).then(|| Rules {
                        max_training_flops: LINES[v.line],
                        allow: v.allow.iter().map(|r| r.pattern(&ids)).collect(),
                        deny: v.deny.iter().map(|r| r.pattern(&all_names)).collect(),
                        declaration: match v.requirement {
                            0 => Requirement::Always,
                            1 => Requirement::Never,
                            _ => Requirement::AtOrAboveFlops(DECLARATION_LINES[v.declaration_line]),
                        },
                        residencies: v.residencies.iter().map(|r| r.pattern(&labels)).collect(),
                    });
                    VersionIn { window, rules, says_not_embargoed: v.says_not_embargoed }
                })
                .collect();
            JurisdictionIn {
                id: format!("j{k}"),
                countries,
                star: star == Some(k),
                via_group: via_group.then_some(excluded),
                versions,
            }
        })
        .collect();

    let tenants = tenants
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let j = t.jurisdiction.index(n);
            let mut candidates = jurisdictions[j].countries.clone();
            if jurisdictions[j].star {
                candidates.extend((0..COUNTRIES.len()).filter(|&c| owner(c).is_none()).map(|c| COUNTRIES[c]));
            }
            TenantIn {
                id: format!("t{i}"),
                legal_name: t.legal_name,
                country: candidates[t.country.index(candidates.len())],
                jurisdiction: j,
                status_suspended: t.status_suspended,
                suspension: t
                    .suspension
                    .map(|(start, len, open_start, open_end)| window(start, len, open_start, open_end)),
                allow: t.allow.map(|list| list.iter().map(|r| r.pattern(&ids)).collect()),
                declaration: t.declaration.map(|(from, len, purposes)| DeclarationIn {
                    effective_from: from,
                    expires: from.unwrap_or(0) + len,
                    purposes,
                }),
                cleared: t.cleared,
            }
        })
        .collect();
    ConfigIn { models, jurisdictions, tenants, listed }
}

// --- the config folder, as TOML ---------------------------------------------------------------

fn list(items: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{:?}", s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

fn float(f: f64) -> String {
    if f.is_infinite() { "inf".to_owned() } else { format!("{f:e}") }
}

/// `key = date` and a newline, or nothing for an open end.
fn dated(key: &str, offset: Option<i64>) -> String {
    offset.map(|d| format!("{key} = {}\n", day(d))).unwrap_or_default()
}

fn endpoint_url(m: usize, e: usize) -> String {
    format!("http://127.0.0.1:1/m{m}e{e}/v1")
}

impl ConfigIn {
    fn files(&self) -> Vec<(&'static str, String)> {
        use std::fmt::Write;
        let mut models = String::new();
        for (m, model) in self.models.iter().enumerate() {
            let _ = writeln!(models, "[[models]]\nid = {:?}\naliases = {}", model.id, list(&model.aliases));
            let _ = writeln!(models, "training_flops = {}\ncompute_basis = \"assumed\"", float(model.training_flops));
            if let Some(ops) = &model.operations {
                let _ = writeln!(models, "operations = {}", list(ops));
            }
            for (e, residency) in model.residencies.iter().enumerate() {
                let _ = writeln!(models, "[[models.endpoints]]\nurl = {:?}", endpoint_url(m, e));
                if model.anthropic {
                    let _ = writeln!(models, "kind = \"anthropic\"");
                }
                let _ = writeln!(models, "residency = {residency:?}\napi_key_env = \"UPSTREAM_KEY\"");
            }
        }

        let mut groups = String::new();
        let mut jurisdictions = String::new();
        for (k, j) in self.jurisdictions.iter().enumerate() {
            for v in &j.versions {
                let (from, until) = (dated("effective_from", v.window.from), dated("until", v.window.until));
                let _ = write!(jurisdictions, "[[jurisdictions]]\nid = {:?}\n{from}{until}", j.id);
                let star: &[&str] = if j.star { &["*"] } else { &[] };
                match j.via_group {
                    None => {
                        let countries: Vec<&str> = star.iter().chain(&j.countries).copied().collect();
                        let _ = writeln!(jurisdictions, "countries = {}", list(&countries));
                    }
                    Some(excluded) => {
                        let _ = writeln!(jurisdictions, "countries = {}", list(star));
                        let _ = writeln!(jurisdictions, "country_groups = [\"grp-{k}\"]");
                        let _ = writeln!(jurisdictions, "exclude_countries = {}", list(&Vec::from_iter(excluded)));
                    }
                }
                match &v.rules {
                    None => {
                        let _ = writeln!(jurisdictions, "embargoed = true");
                    }
                    Some(r) => {
                        if v.says_not_embargoed {
                            let _ = writeln!(jurisdictions, "embargoed = false");
                        }
                        let _ = writeln!(jurisdictions, "max_training_flops = {}", float(r.max_training_flops));
                        let _ = writeln!(jurisdictions, "allow_models = {}", list(&r.allow));
                        let _ = writeln!(jurisdictions, "deny_models = {}", list(&r.deny));
                        let _ = match r.declaration {
                            Requirement::Always => writeln!(jurisdictions, "require_declaration = \"always\""),
                            Requirement::Never => writeln!(jurisdictions, "require_declaration = \"never\""),
                            Requirement::AtOrAboveFlops(f) => writeln!(
                                jurisdictions,
                                "require_declaration = \"at-or-above-flops\"\ndeclaration_flops = {}",
                                float(f)
                            ),
                        };
                        let _ = writeln!(jurisdictions, "allowed_residencies = {}", list(&r.residencies));
                    }
                }
            }
            if let Some(excluded) = j.via_group {
                let members: Vec<&str> = j.countries.iter().copied().chain(excluded).collect();
                let _ = writeln!(groups, "[[groups]]\nid = \"grp-{k}\"\ncountries = {}", list(&members));
            }
        }

        let mut tenants = String::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let _ = writeln!(tenants, "[[tenants]]\nid = {:?}\nlegal_name = {:?}", t.id, LEGAL_NAMES[t.legal_name]);
            let _ = writeln!(tenants, "country = {:?}\njurisdiction = \"j{}\"", t.country, t.jurisdiction);
            let status = if t.status_suspended { "suspended" } else { "active" };
            let _ = writeln!(tenants, "status = {status:?}\nkey_sha256 = [\"{:064x}\"]", i + 1);
            if let Some(allow) = &t.allow {
                let _ = writeln!(tenants, "allow_models = {}", list(allow));
            }
            if let Some(d) = &t.declaration {
                let from = dated("effective_from", d.effective_from);
                let _ = write!(tenants, "[tenants.end_use]\nid = \"EUD-{i}\"\n{from}");
                let _ = writeln!(tenants, "expires = {}\npurposes = {}", day(d.expires), list(&d.purposes));
            }
            if let Some(s) = t.suspension {
                let (from, until) = (dated("effective_from", s.from), dated("until", s.until));
                let _ = write!(tenants, "[tenants.suspension]\nreason = \"generated\"\n{from}{until}");
            }
        }

        let mut files = vec![
            ("models.toml", models),
            ("country-groups.toml", groups),
            ("jurisdictions.toml", jurisdictions),
            ("tenants.toml", tenants),
        ];
        // With nothing listed there is no screening at all, the example's other shape.
        if self.listed.iter().any(|&l| l) {
            let mut screening = "[screening]\nlist = \"screening-list.csv\"\n".to_owned();
            for (i, t) in self.tenants.iter().enumerate().filter(|(_, t)| t.cleared && self.listed[t.legal_name]) {
                let _ = writeln!(
                    screening,
                    "[[clearances]]\ntenant = \"t{i}\"\nentry = \"E{}\"\nreviewer = \"r@example.com\"\n\
                     date = {}\nnote = \"generated\"",
                    t.legal_name,
                    day(0)
                );
            }
            let columns = customs::screening::CSL_COLUMNS;
            let row = |cells: &[String]| cells.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(",");
            let mut csv = row(&columns.map(str::to_owned)) + "\n";
            for (k, name) in LEGAL_NAMES.iter().enumerate().filter(|(k, _)| self.listed[*k]) {
                let mut cells = vec![String::new(); columns.len()];
                cells[0] = format!("E{k}");
                cells[1] = LIST_SOURCE.to_owned();
                cells[5] = name.to_uppercase();
                csv += &(row(&cells) + "\n");
            }
            files.push(("screening.toml", screening));
            files.push(("screening-list.csv", csv));
        }
        files
    }

    /// The files, for a failure message: what to paste into a folder to see it again.
    fn dump(&self) -> String {
        self.files().iter().map(|(name, text)| format!("--- {name}\n{text}")).collect()
    }

    /// A jurisdiction version's index among the file's `[[jurisdictions]]` blocks.
    fn block(&self, j: usize, v: usize) -> usize {
        self.jurisdictions[..j].iter().map(|j| j.versions.len()).sum::<usize>() + v
    }

    /// Every day on which some dated rule starts or stops applying, and the days either side,
    /// plus a day long before and one long after everything.
    fn days(&self) -> Vec<i64> {
        let mut dates = vec![-10_000, 10_000];
        for j in &self.jurisdictions {
            for v in &j.versions {
                dates.extend(v.window.from.into_iter().chain(v.window.until));
            }
        }
        for t in &self.tenants {
            if let Some(s) = t.suspension {
                dates.extend(s.from.into_iter().chain(s.until));
            }
            if let Some(d) = &t.declaration {
                dates.extend(d.effective_from.into_iter().chain([d.expires]));
            }
        }
        dates.iter().flat_map(|&d| [d - 1, d, d + 1]).collect::<BTreeSet<_>>().into_iter().collect()
    }

    fn load(&self) -> Result<(tempfile::TempDir, config::Config), String> {
        let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
        for (name, text) in self.files() {
            std::fs::write(dir.path().join(name), text).map_err(|e| e.to_string())?;
        }
        load_folder(dir.path()).map(|c| (dir, c))
    }
}

/// The loader `customs check` runs, with every credential variable set.
fn load_folder(dir: &Path) -> Result<config::Config, String> {
    config::load(dir, &|_| Some("upstream-key".to_owned())).map_err(|e| e.to_string())
}

// --- the reference evaluator ------------------------------------------------------------------

/// The README's glob dialect, as far as the generator uses it: `*` any run of characters (`/`
/// included), `?` one character, `{a,b}` alternatives (one level), everything else literal,
/// matched against the whole name.
fn glob_matches(pattern: &str, name: &str) -> bool {
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}')) {
        let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
        return pattern[open + 1..close].split(',').any(|alt| glob_matches(&format!("{head}{alt}{tail}"), name));
    }
    fn wildcard(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| wildcard(rest, &s[i..])),
            Some((b'?', rest)) => !s.is_empty() && wildcard(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && wildcard(rest, &s[1..]),
        }
    }
    wildcard(pattern.as_bytes(), name.as_bytes())
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The URLs of the endpoints that may serve it, in config order.
    Allow(Vec<String>),
    Deny(Denial),
}

/// What the reference decides, and what it expects the policy to report alongside.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    outcome: Outcome,
    /// The catalog index of the model, once the name was looked up.
    model: Option<usize>,
    /// The key of the config entry that decided, as `explain` shows it.
    rule: Option<String>,
}

/// One request decided from the generated inputs alone, step by step in the README's order.
fn reference(c: &ConfigIn, t: usize, name: &str, purpose: Option<&str>, today: i64) -> Expected {
    let deny =
        |model: Option<usize>, denial, rule: Option<String>| Expected { outcome: Outcome::Deny(denial), model, rule };
    let tenant = &c.tenants[t];
    let tenant_key = |field: &str| format!("tenants[{t}] ({}).{field}", tenant.id);

    // Suspended: by status, or by a scheduled suspension covering today.
    if tenant.status_suspended {
        return deny(None, Denial::TenantSuspended, Some(tenant_key("status")));
    }
    if tenant.suspension.is_some_and(|s| s.contains(today)) {
        return deny(None, Denial::TenantSuspended, Some(tenant_key("suspension")));
    }

    // A restricted party: its legal name is on the list, and no reviewer cleared it.
    if c.listed[tenant.legal_name] && !tenant.cleared {
        return deny(None, Denial::DeniedParty, Some(format!("E{} ({LIST_SOURCE})", tenant.legal_name)));
    }

    // The version of the tenant's jurisdiction in force today, if any; embargoed refuses all.
    let j = &c.jurisdictions[tenant.jurisdiction];
    let block_key =
        |v: usize, field: &str| format!("jurisdictions[{}] ({}).{field}", c.block(tenant.jurisdiction, v), j.id);
    let in_force = j.versions.iter().position(|v| v.window.contains(today));
    if let Some(v) = in_force
        && j.versions[v].rules.is_none()
    {
        return deny(None, Denial::JurisdictionEmbargoed, Some(block_key(v, "embargoed")));
    }

    // The model, by id or alias, exactly.
    let Some(m) = c.models.iter().position(|m| m.id == name || m.aliases.contains(&name)) else {
        return deny(None, Denial::ModelNotFound, None);
    };
    let model = &c.models[m];

    // No version in force: nothing is allowed. The refusal names the date the gap ends at (the
    // next version's effective_from) or, after the last version, that version's until.
    let Some(v) = in_force else {
        let rule = match j.versions.iter().position(|v| v.window.from.is_some_and(|f| f > today)) {
            Some(next) => block_key(next, "effective_from"),
            None => block_key(j.versions.len() - 1, "until"),
        };
        return deny(Some(m), Denial::ModelNotAllowed, Some(rule));
    };
    let Some(rules) = &j.versions[v].rules else { unreachable!("embargoed versions refused above") };

    // Deny patterns see every name of the model; allow patterns only its id.
    let names: Vec<&str> = std::iter::once(model.id).chain(model.aliases.iter().copied()).collect();
    if let Some(k) = rules.deny.iter().position(|p| names.iter().any(|n| glob_matches(p, n))) {
        return deny(Some(m), Denial::ModelNotAllowed, Some(block_key(v, &format!("deny_models[{k}]"))));
    }
    let Some(allowed_by) = rules.allow.iter().position(|p| glob_matches(p, model.id)) else {
        return deny(Some(m), Denial::ModelNotAllowed, Some(block_key(v, "allow_models")));
    };

    // The tenant's own allowlist only narrows.
    if let Some(allow) = &tenant.allow
        && !allow.iter().any(|p| glob_matches(p, model.id))
    {
        return deny(Some(m), Denial::ModelNotAllowed, Some(tenant_key("allow_models")));
    }

    if model.training_flops >= rules.max_training_flops {
        return deny(Some(m), Denial::ComputeThresholdExceeded, Some(block_key(v, "max_training_flops")));
    }

    // A declaration counts only from its effective_from; before, it is as if none were on file,
    // and a refusal names the day it starts.
    let declaration = tenant.declaration.as_ref();
    let pending = declaration.is_some_and(|d| d.effective_from.is_some_and(|f| today < f));
    let on_file = declaration.filter(|_| !pending);
    let absent_key = if pending { tenant_key("end_use.effective_from") } else { tenant_key("end_use") };
    let required_by = match rules.declaration {
        Requirement::Always => Some("require_declaration"),
        Requirement::Never => None,
        Requirement::AtOrAboveFlops(line) => (model.training_flops >= line).then_some("declaration_flops"),
    };
    if let Some(field) = required_by {
        match on_file {
            None if pending => return deny(Some(m), Denial::EndUseDeclarationRequired, Some(absent_key)),
            None => return deny(Some(m), Denial::EndUseDeclarationRequired, Some(block_key(v, field))),
            Some(d) if today > d.expires => {
                return deny(Some(m), Denial::EndUseDeclarationExpired, Some(tenant_key("end_use")));
            }
            Some(_) => {}
        }
    }
    // A stated purpose must be declared in a declaration in force, required or not.
    if let Some(p) = purpose {
        match on_file {
            None => return deny(Some(m), Denial::PurposeNotDeclared, Some(absent_key)),
            Some(d) if today > d.expires => {
                return deny(Some(m), Denial::EndUseDeclarationExpired, Some(tenant_key("end_use")));
            }
            Some(d) if !d.purposes.contains(&p) => {
                return deny(Some(m), Denial::PurposeNotDeclared, Some(tenant_key("end_use")));
            }
            Some(_) => {}
        }
    }

    // At least one endpoint runs where the jurisdiction allows; they stay in config order.
    let endpoints: Vec<String> = (model.residencies.iter().enumerate())
        .filter(|(_, r)| rules.residencies.iter().any(|p| glob_matches(p, r)))
        .map(|(e, _)| endpoint_url(m, e))
        .collect();
    if endpoints.is_empty() {
        return deny(Some(m), Denial::NoResidentEndpoint, Some(block_key(v, "allowed_residencies")));
    }
    Expected {
        outcome: Outcome::Allow(endpoints),
        model: Some(m),
        rule: Some(block_key(v, &format!("allow_models[{allowed_by}]"))),
    }
}

/// Whether a model serves an operation: what `operations` lists, else all its endpoints' kind
/// serves (anthropic: messages and count_tokens; openai: the rest).
fn reference_serves(model: &ModelIn, op: Operation) -> bool {
    match &model.operations {
        Some(ops) => ops.contains(&op.config_name()),
        None => (op.config_name() == "messages") == model.anthropic,
    }
}

// --- asking the policy ------------------------------------------------------------------------

/// What the compiled policy says, in the reference's terms.
fn decided(policy: &Policy, t: u32, name: &str, purpose: Option<&str>, today: i64) -> Expected {
    let d = policy.decide(t, name, purpose, day(today));
    let outcome = match d.verdict {
        Verdict::Allow { endpoints } => {
            Outcome::Allow(endpoints.iter().filter_map(|&e| policy.endpoint(e)).map(|e| e.url.to_string()).collect())
        }
        Verdict::Deny(denial) => Outcome::Deny(denial),
    };
    Expected {
        outcome,
        model: d.model.map(|m| m as usize),
        rule: d.rule.and_then(|r| policy.rule(r)).map(|r| r.key.to_string()),
    }
}

/// Every request this config can be asked: each tenant; each id and alias, and a few names the
/// catalog does not hold (another name from the pool, and near misses of an id); no purpose or
/// each purpose, declared or not; on each day where something changes.
fn queries(c: &ConfigIn) -> Vec<(usize, String, Option<&'static str>, i64)> {
    let first = c.models[0].id;
    let unknown = NAMES.iter().find(|n| !c.models.iter().any(|m| m.id == **n || m.aliases.contains(n)));
    let names: Vec<String> = (c.models.iter().flat_map(|m| std::iter::once(m.id).chain(m.aliases.iter().copied())))
        .chain(unknown.copied())
        .map(str::to_owned)
        .chain([first.to_uppercase(), format!("{first} "), String::new()])
        .collect();
    let purposes: Vec<Option<&str>> =
        std::iter::once(None).chain(PURPOSES.iter().chain([&UNDECLARED]).copied().map(Some)).collect();
    let days = c.days();
    let mut out = Vec::new();
    for t in 0..c.tenants.len() {
        for n in &names {
            for &p in &purposes {
                out.extend(days.iter().map(|&d| (t, n.clone(), p, d)));
            }
        }
    }
    out
}

/// Loads a generated folder. The generator writes only valid configs, so a refusal is its bug,
/// shown with the files.
fn load_generated(c: &ConfigIn) -> Result<(tempfile::TempDir, config::Config), TestCaseError> {
    let refused =
        |e| TestCaseError::fail(format!("the generator wrote a config the loader refuses:\n{e}\n{}", c.dump()));
    c.load().map_err(refused)
}

fn tenant_index(policy: &Policy, c: &ConfigIn, t: usize) -> u32 {
    policy.tenant_by_id(&c.tenants[t].id).unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// The safety property: whatever the reference refuses, the policy refuses too.
    #[test]
    fn policy_request_the_reference_denies_is_denied(c in config_in()) {
        let (_dir, loaded) = load_generated(&c)?;
        let policy = &loaded.policy;
        for (t, name, purpose, today) in queries(&c) {
            let name = name.as_str();
            let want = reference(&c, t, name, purpose, today);
            let Outcome::Deny(denial) = want.outcome else { continue };
            let got = policy.decide(tenant_index(policy, &c, t), name, purpose, day(today));
            prop_assert!(
                matches!(got.verdict, Verdict::Deny(_)),
                "policy allows t{} {:?} purpose {:?} on {} that the reference denies ({})\n{}",
                t, name, purpose, day(today), denial.code(), c.dump()
            );
        }
    }

    /// Exact agreement: the same verdict, reason code, resolved model, endpoints in order and
    /// deciding rule for every request; `explain` says the same; the head-time refusal
    /// (`tenant_refusal`), the model listing (`allowed_models`) and the operations each model
    /// serves agree with the reference too.
    #[test]
    fn policy_any_request_is_decided_as_the_reference_decides(c in config_in()) {
        let (_dir, loaded) = load_generated(&c)?;
        let policy = &loaded.policy;
        for (i, (t, name, purpose, today)) in queries(&c).into_iter().enumerate() {
            let name = name.as_str();
            let ti = tenant_index(policy, &c, t);
            let want = reference(&c, t, name, purpose, today);
            let got = decided(policy, ti, name, purpose, today);
            prop_assert_eq!(
                &got, &want,
                "t{} {:?} purpose {:?} on {}: policy (left) and reference (right) disagree\n{}",
                t, name, purpose, day(today), c.dump()
            );
            // `explain` is `decide` plus rendering: a fifth of the requests, spread evenly, is
            // enough to see it report what was decided.
            if i % 5 == 0 {
                let e = customs::explain::explain(policy, &c.tenants[t].id, name, purpose, day(today)).unwrap();
                let code = match &want.outcome {
                    Outcome::Allow(_) => None,
                    Outcome::Deny(d) => Some(d.code()),
                };
                prop_assert_eq!(e.reason, code, "explain t{} {:?} {:?} on {}", t, name, purpose, day(today));
            }
        }
        for t in 0..c.tenants.len() {
            let ti = tenant_index(policy, &c, t);
            for today in c.days() {
                // Whatever the model: the gateway asks before it reads the body.
                let head_steps = [Denial::TenantSuspended, Denial::DeniedParty, Denial::JurisdictionEmbargoed];
                let head = match reference(&c, t, "", None, today).outcome {
                    Outcome::Deny(d) if head_steps.contains(&d) => Some(d),
                    _ => None,
                };
                let refusal = policy.tenant_refusal(ti, day(today)).map(|(d, _)| d);
                prop_assert_eq!(refusal, head, "tenant_refusal t{} on {}", t, day(today));
                let listed: Vec<&str> = policy.allowed_models(ti, day(today)).map(|m| &*m.id).collect();
                let want: Vec<&str> = (c.models.iter())
                    .filter(|m| matches!(reference(&c, t, m.id, None, today).outcome, Outcome::Allow(_)))
                    .map(|m| m.id)
                    .collect();
                prop_assert_eq!(listed, want, "allowed_models t{} on {}", t, day(today));
            }
        }
        for (m, model) in c.models.iter().enumerate() {
            for op in Operation::ALL {
                let serves = policy.models()[m].serves(op);
                prop_assert_eq!(serves, reference_serves(model, op), "{} serves {:?}", model.id, op);
            }
        }
    }
}

/// The reference on a hand-written config, so that a property passing is not a reference that
/// agrees with anything: each step of the order is seen to refuse.
#[test]
fn reference_hand_written_config_refuses_at_each_step() {
    let model = |id, flops, residencies: Vec<&'static str>| ModelIn {
        id,
        aliases: vec![],
        training_flops: flops,
        anthropic: false,
        operations: None,
        residencies,
    };
    let rules = Rules {
        max_training_flops: 1e25,
        allow: vec!["*".into()],
        deny: vec!["qwen-*".into()],
        declaration: Requirement::AtOrAboveFlops(1e24),
        residencies: vec!["us-*".into()],
    };
    let tenant = |id: &str, legal_name| TenantIn {
        id: id.into(),
        legal_name,
        country: "US",
        jurisdiction: 0,
        status_suspended: false,
        suspension: None,
        allow: None,
        declaration: Some(DeclarationIn { effective_from: Some(5), expires: 10, purposes: vec!["support"] }),
        cleared: false,
    };
    let c = ConfigIn {
        models: vec![
            model("gpt-4", 1e23, vec!["us-east"]),
            model("gpt-4o", 5e24, vec!["us-east"]),
            model("qwen-7b", 1e23, vec!["us-east"]),
            model("o1", 1e25, vec!["us-east"]),
            model("emb-small", 1e23, vec!["eu-west"]),
        ],
        jurisdictions: vec![JurisdictionIn {
            id: "j0".into(),
            countries: vec!["US"],
            star: false,
            via_group: None,
            // In force through day 14, nothing from 15 to 19, embargoed from 20.
            versions: vec![
                VersionIn {
                    window: Window { from: None, until: Some(14) },
                    rules: Some(rules),
                    says_not_embargoed: true,
                },
                VersionIn { window: Window { from: Some(20), until: None }, rules: None, says_not_embargoed: false },
            ],
        }],
        tenants: vec![tenant("t0", 0), TenantIn { status_suspended: true, ..tenant("t1", 1) }, tenant("t2", 2)],
        listed: vec![false, false, true, false, false],
    };
    let reason = |t, name, purpose, today| match reference(&c, t, name, purpose, today).outcome {
        Outcome::Allow(_) => "allowed",
        Outcome::Deny(d) => d.code(),
    };
    assert_eq!(reason(1, "gpt-4", None, 7), "tenant_suspended");
    assert_eq!(reason(2, "gpt-4", None, 7), "denied_party");
    assert_eq!(reason(0, "GPT-4", None, 7), "model_not_found");
    assert_eq!(reason(0, "qwen-7b", None, 7), "model_not_allowed");
    assert_eq!(reason(0, "o1", None, 7), "compute_threshold_exceeded");
    assert_eq!(reason(0, "gpt-4o", None, 4), "end_use_declaration_required");
    assert_eq!(reason(0, "gpt-4o", None, 11), "end_use_declaration_expired");
    assert_eq!(reason(0, "gpt-4", Some("research"), 7), "purpose_not_declared");
    assert_eq!(reason(0, "gpt-4", Some("support"), 4), "purpose_not_declared");
    assert_eq!(reason(0, "gpt-4", Some("support"), 11), "end_use_declaration_expired");
    assert_eq!(reason(0, "gpt-4", None, 11), "allowed");
    assert_eq!(reason(0, "emb-small", None, 7), "no_resident_endpoint");
    assert_eq!(reason(0, "gpt-4", None, 15), "model_not_allowed");
    assert_eq!(reason(0, "GPT-4", None, 20), "jurisdiction_embargoed");

    // And the policy loaded from the same files answers the same.
    let (_dir, loaded) = c.load().unwrap();
    for (t, name, purpose, today) in queries(&c) {
        let name = name.as_str();
        let ti = tenant_index(&loaded.policy, &c, t);
        assert_eq!(decided(&loaded.policy, ti, name, purpose, today), reference(&c, t, name, purpose, today));
    }
}
