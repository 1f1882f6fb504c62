//! A generated policy at production scale: 10,000 tenants, 1,000 models with aliases and
//! 250 jurisdictions, for the benchmarks and the allocation test. Deterministic, so figures from
//! different runs are comparable.

use std::fmt::Write as _;
use std::path::Path;

pub const TENANTS: usize = 10_000;
pub const MODELS: usize = 1_000;
pub const JURISDICTIONS: usize = 250;
const FAMILIES: usize = 50;
const RESIDENCIES: [&str; 4] = ["us-east", "eu-west", "ap-south", "cn-north"];

/// The plaintext key of generated tenant `i`.
pub fn key(i: usize) -> String {
    format!("sk-bench-{i:05}")
}

/// The ISO-style code of jurisdiction `j`'s one country (AA, AB, ..., JP).
fn country(j: usize) -> String {
    let a = (b'A' + (j / 26) as u8) as char;
    let b = (b'A' + (j % 26) as u8) as char;
    format!("{a}{b}")
}

pub fn model_id(m: usize) -> String {
    format!("fam{:02}-model-{m:04}", m % FAMILIES)
}

/// Writes the config folder; every endpoint points at `upstream` (host:port).
pub fn write(dir: &Path, upstream: &str) -> std::io::Result<()> {
    let mut models = String::new();
    for m in 0..MODELS {
        let _ = write!(
            models,
            "[[models]]\nid = \"{}\"\naliases = [\"model-{m:04}-latest\", \"m{m}\"]\ntraining_flops = {:e}\ncompute_basis = \"fictional\"\nparameters = {:e}\n",
            model_id(m),
            1e22 * (1 + m) as f64,
            1e9 * (1 + m % 100) as f64,
        );
        for r in [RESIDENCIES[m % 4], "us-west"] {
            let _ = write!(models, "[[models.endpoints]]\nurl = \"http://{upstream}/v1\"\nresidency = \"{r}\"\n");
        }
    }
    let mut jurisdictions = String::new();
    for j in 0..JURISDICTIONS {
        let allow: Vec<String> = (0..10).map(|k| format!("\"fam{:02}-*\"", (j + k) % FAMILIES)).collect();
        let decl = match j % 3 {
            0 => "require_declaration = \"always\"".to_owned(),
            1 => "require_declaration = \"never\"".to_owned(),
            _ => "require_declaration = \"at-or-above-flops\"\ndeclaration_flops = 1e24".to_owned(),
        };
        let _ = write!(
            jurisdictions,
            "[[jurisdictions]]\nid = \"j{j:03}\"\ncountries = [\"{}\"]\nmax_training_flops = {:e}\nallow_models = [{}]\ndeny_models = [\"model-{:04}-latest\"]\n{decl}\nallowed_residencies = [\"us-*\", \"{}\"]\n",
            country(j),
            1e24 * (1 + j % 30) as f64,
            allow.join(", "),
            (j * 4) % MODELS,
            RESIDENCIES[j % 4],
        );
    }
    let mut tenants = String::new();
    for i in 0..TENANTS {
        let j = i % JURISDICTIONS;
        let digest = hex::encode(customs::auth::digest(key(i).as_bytes()));
        let status = if i % 97 == 96 { "suspended" } else { "active" };
        let _ = write!(
            tenants,
            "[[tenants]]\nid = \"t{i:05}\"\nlegal_name = \"Tenant {i} Ltd.\"\ncountry = \"{}\"\njurisdiction = \"j{j:03}\"\nstatus = \"{status}\"\nkey_sha256 = [\"{digest}\"]\n",
            country(j),
        );
        if i % 5 == 0 {
            let _ = writeln!(tenants, "allow_models = [\"fam{:02}-*\"]", j % FAMILIES);
        }
        if i % 2 == 0 {
            tenants.push_str(
                "[tenants.end_use]\nid = \"EUD\"\nexpires = 2099-12-31\npurposes = [\"research\", \"support\"]\n",
            );
        }
        tenants.push_str("[tenants.limits]\nrequests_per_minute = 1000000000\n");
    }
    std::fs::write(dir.join("models.toml"), models)?;
    std::fs::write(dir.join("jurisdictions.toml"), jurisdictions)?;
    std::fs::write(dir.join("tenants.toml"), tenants)?;
    std::fs::write(dir.join("country-groups.toml"), "[[groups]]\nid = \"first\"\ncountries = [\"AA\"]\n")?;
    Ok(())
}
