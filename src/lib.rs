//! customs: an inference gateway that decides, per request, whether a tenant from its jurisdiction
//! may use a model for a purpose, and then forwards the request to an upstream model endpoint.
//!
//! # The request path
//!
//! ```text
//!  accept ──► request id ──► audit slot ──► route ──► auth ──► body peek ──► policy ──► limits ──► forward
//!  (server)   (request_id)   (audit)        (route)   (auth)   (peek)        (policy)   (limits)   (proxy)
//!                                                                                                  │
//!  client ◄────────── stream back, chunk by chunk, never buffered; usage read on the side ◄────────┘
//!                     however it ends, once: limits settled, metrics counted, one audit record (outcome)
//! ```
//!
//! Two words for two things. The [`policy::Policy`] is the compiled, immutable rules of one config
//! version, built from the config folder by [`config::load`]. The [`snapshot::Snapshot`] is what a
//! request reads: a policy plus what serving it needs at run time (limiters, connection pools,
//! metric handles, suspensions). One snapshot is loaded per request from an `ArcSwap` and used for
//! every phase, so the hot path does no parsing, takes no lock and formats no strings; reloads and
//! the kill switch swap in a new one whole. A refusal at any phase becomes an OpenAI-shaped error
//! (Anthropic-shaped on Anthropic's routes) via [`error::GatewayError`], and every request ends in [`outcome::Exchange::finish`].
//!
//! Beside the path: [`owners`] (which tenant created each response stored upstream, so only it
//! can address it again), [`audit`] (the hash-chained trail, written ahead by one writer task), [`admin`] (the
//! admin listener: health, readiness, metrics, hot reload and the kill switch, each of which
//! changes the request path only by swapping in a new snapshot), [`mock`] (the mock upstream
//! model server used by the demo, tests and benchmarks) and [`demo`].
//!
//! Off the path: [`screening`] (denied-party screening of tenant names against the Consolidated
//! Screening List, at config load), [`report`] (reads the audit trail back into the
//! foreign-access report) and [`replay`] (decides a trail's decisions again under a proposed
//! config and lists what would flip), and [`generate`] (config folders at a provider's scale, for
//! the load and reload figures).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body_rate;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod endpoint;
pub mod error;
pub mod explain;
pub mod gateway;
pub mod generate;
pub mod ids;
pub mod killswitch;
pub mod limits;
pub mod mock;
pub mod outcome;
pub mod owners;
pub mod peek;
pub mod policy;
pub mod proxy;
pub mod reason;
pub mod replay;
pub mod report;
pub mod request_id;
pub mod route;
pub mod screen;
pub mod screening;
pub mod server;
pub mod snapshot;
pub mod stack;
pub mod telemetry;
pub mod tls;
pub mod usage;
