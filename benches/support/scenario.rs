//! The load scenario laid over the example config: `benches/load/scenario/` files where they
//! exist, `config/` otherwise, with the upstream address and the bench's folder filled in. Shared
//! by the load bench and the in-process request-path bench, so both serve the same policy.

use std::path::Path;

/// Writes the scenario's config files into `dir`, every endpoint at `upstream` (host:port). With
/// `gateway_only`, only `gateway.toml`, for a generated policy that has none of its own.
pub fn write(dir: &Path, upstream: &str, gateway_only: bool) -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The screening list is not a *.toml file of FILES, but it is screened against like the rest.
    let files = customs::config::FILES.names().chain(["screening-list.csv"]);
    for name in files.filter(|name| !gateway_only || *name == "gateway.toml") {
        let scenario = root.join("benches/load/scenario").join(name);
        let source = if scenario.exists() { scenario } else { root.join("config").join(name) };
        let text = std::fs::read_to_string(source)?
            .replace("127.0.0.1:8081", upstream)
            .replace("@BENCH_DIR@", &dir.display().to_string());
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}
