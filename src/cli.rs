//! Command-line interface: `serve`, `demo`, `check`, `explain` and `keygen`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// customs: an inference gateway that enforces export-control policy on every request.
///
/// Policy lives in a config folder (models, jurisdictions, country groups, tenants, and the
/// expectations compliance keeps beside them). Check it and its expectations with `customs check`,
/// ask it questions with `customs explain`, serve it with `customs serve`.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway on a config folder.
    Serve {
        /// The config folder.
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// Inference listener; overrides `server.listen` in gateway.toml.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Admin listener (/healthz, /readyz); overrides `server.admin_listen`.
        #[arg(long, value_name = "ADDR")]
        admin_listen: Option<SocketAddr>,
    },
    /// Run the example config with the mock upstream in-process, and print curl commands to try.
    Demo {
        /// The config folder to demo.
        #[arg(long, value_name = "DIR", default_value = "config")]
        config: PathBuf,
    },
    /// Validate a config folder and evaluate its expectations.toml; lists every problem and every
    /// failed expectation, and exits 1 if there is any.
    Check {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// Also require every `api_key_env` variable to be set (for deploy pipelines).
        #[arg(long)]
        require_env: bool,
        /// Evaluate expectations that name no `at` date as of this day (YYYY-MM-DD) instead of today.
        #[arg(long, value_name = "DATE")]
        at: Option<String>,
        /// Also print a PASS line for every expectation that holds.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Show the decision for one tenant and model, and the rule that made it.
    Explain {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// Tenant id, as in tenants.toml.
        #[arg(long)]
        tenant: String,
        /// Model name as a client would send it (id or alias).
        #[arg(long)]
        model: String,
        /// Purpose, as a client would send in `x-customs-purpose`.
        #[arg(long)]
        purpose: Option<String>,
        /// Decide as of this day (YYYY-MM-DD) instead of today.
        #[arg(long, value_name = "DATE")]
        at: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a fresh random API key and the digest line to paste into a tenant.
    Keygen,
}
