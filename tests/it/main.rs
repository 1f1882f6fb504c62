//! Integration tests over real sockets: the gateway and a mock upstream on 127.0.0.1:0.
#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly and at once")]

mod architecture;
mod audit_trail;
mod azure;
mod check_expectations;
mod cluster;
mod config_errors;
mod dates;
mod demo;
mod explain_agrees;
mod explain_tools;
mod forwarding;
mod generate;
mod kill_switch;
mod limits;
mod messages;
mod metering;
mod one_gate;
mod outcomes;
mod ownership;
mod policy_codes;
mod policy_reference;
mod process;
mod properties;
mod reload;
mod replay;
mod report_html;
mod report_traffic;
mod requests;
mod responses;
mod screening;
mod streaming;
mod support;
mod tenant_files;
mod tls;
