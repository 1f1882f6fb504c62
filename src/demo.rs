//! `customs demo`: the example config served on 127.0.0.1:8080 with the mock upstream started
//! in-process on every loopback address the example endpoints point at.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::SharedEnv;
use crate::config::{self, Config, ConfigErrors};
use crate::mock::{MockOptions, MockUpstream};

/// The upstream key the demo uses for any `api_key_env` variable that is not set.
pub const DEMO_UPSTREAM_KEY: &str = "demo-upstream-key";

pub const DEMO_LISTEN: &str = "127.0.0.1:8080";
pub const DEMO_ADMIN_LISTEN: &str = "127.0.0.1:9090";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the config has errors:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot start the mock upstream on {addr}: {source}")]
    Mock { addr: String, source: std::io::Error },
}

/// The admin token the demo uses when `CUSTOMS_ADMIN_TOKEN` is not set.
pub const DEMO_ADMIN_TOKEN: &str = "demo-admin-token";
/// Where the demo writes its audit trail and kill-switch state, in the working directory.
pub const DEMO_AUDIT_DIR: &str = "demo-audit";

/// The process environment, with demo values for the admin token and upstream keys when unset.
pub fn env() -> SharedEnv {
    Arc::new(|name: &str| {
        config::process_env(name).or_else(|| {
            Some(if name == "CUSTOMS_ADMIN_TOKEN" { DEMO_ADMIN_TOKEN } else { DEMO_UPSTREAM_KEY }.to_owned())
        })
    })
}

/// Loads the config with demo credentials filled in for unset variables, the audit trail in
/// `demo-audit/` and the kill-switch state beside it.
pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
    let mut config = config::load(dir, &*env())?;
    config.settings.audit.dir = Some(PathBuf::from(DEMO_AUDIT_DIR));
    config.settings.admin.state_file = Some(Path::new(DEMO_AUDIT_DIR).join("kill-switch.json"));
    config.settings.admin.token_env = "CUSTOMS_ADMIN_TOKEN".into();
    Ok(config)
}

/// Starts a mock upstream for each loopback authority the endpoints use, accepting the keys
/// those endpoints send.
pub async fn start_mocks(config: &Config) -> Result<Vec<MockUpstream>, DemoError> {
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in config.policy.endpoints().iter().filter(|e| e.is_loopback()) {
        let keys = wanted.entry(e.authority().to_owned()).or_default();
        if let Some((_, v)) = e.credential() {
            let v = v.to_str().unwrap_or_default();
            let key = v.strip_prefix("Bearer ").unwrap_or(v).to_owned();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut mocks = Vec::new();
    for (authority, api_keys) in wanted {
        let addr: SocketAddr = authority.replace("localhost", "127.0.0.1").parse().map_err(|_| DemoError::Mock {
            addr: authority.clone(),
            source: std::io::Error::other("not an IP:port"),
        })?;
        let opts = MockOptions { name: format!("mock@{authority}"), api_keys, record: false, ..MockOptions::default() };
        let mock =
            MockUpstream::start(addr, opts).await.map_err(|source| DemoError::Mock { addr: authority, source })?;
        mocks.push(mock);
    }
    Ok(mocks)
}

/// The curl commands printed when the demo starts. The admin token is shown only when it is the
/// demo's own; a token from the environment is a secret.
pub fn instructions(addr: SocketAddr, admin: SocketAddr) -> String {
    let token =
        if config::process_env("CUSTOMS_ADMIN_TOKEN").is_some() { "$CUSTOMS_ADMIN_TOKEN" } else { DEMO_ADMIN_TOKEN };
    let today = crate::policy::Day::today();
    let chat = |key: &str, model: &str| {
        format!(
            "curl -s http://{addr}/v1/chat/completions -H 'Authorization: Bearer {key}' \\\n     -H 'Content-Type: application/json' \\\n     -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'"
        )
    };
    let responses = format!(
        "curl -s http://{addr}/v1/responses -H 'Authorization: Bearer sk-demo-us' \\\n     -H 'Content-Type: application/json' -d '{{\"model\":\"gpt-4o-mini\",\"input\":\"hello\"}}'"
    );
    let messages = |key: &str, stream: bool| {
        let (n, stream) = if stream { ("N", ",\"stream\":true") } else { ("", "") };
        format!(
            "curl -s{n} http://{addr}/v1/messages -H 'x-api-key: {key}' -H 'anthropic-version: 2023-06-01' \\\n     -H 'Content-Type: application/json' \\\n     -d '{{\"model\":\"claude-3-5-sonnet\",\"max_tokens\":64{stream},\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'"
        )
    };
    format!(
        "customs demo is running: gateway http://{addr}, admin http://{admin}\n\
         Demo keys: sk-demo-us (US), sk-demo-cn (China, end-use declaration on file), sk-demo-suspended,\n\
         sk-demo-de (Germany), sk-demo-mo (Macau, declaration expired), sk-demo-ir (Iran, embargoed),\n\
         sk-demo-embed (embeddings only), sk-demo-limited (3 requests per minute),\n\
         sk-demo-listed (matches a screening-list entry: denied_party), sk-demo-nl (same name, cleared),\n\
         sk-demo-sg (55% owned by listed parties: denied_party under the Affiliates rule),\n\
         sk-demo-parented (parent headquartered in China: answers to D:5 + Macau too),\n\
         sk-demo-lapsed (customer verification lapsed: kyc_expired). `customs screen --ownership` shows why.\n\n\
         # 1. allowed: a US tenant uses GPT-4o\n{}\n\n\
         # 2. compute_threshold_exceeded: GPT-4o (3.81e25 FLOPs) is above the D:5 + Macau line (1e25)\n{}\n\n\
         # 3. model_not_allowed: the D:5 + Macau jurisdiction denies claude-* outright (Anthropic's\n         #    Messages API, refused in Anthropic's error shape)\n{}\n\n\
         # the OpenAI Responses API (the response id is bound to sk-demo-us: only it can fetch it)\n{}\n\n\
         # Anthropic's Messages API, streamed\n{}\n\n\
         # streaming, the model list, and the decision explained:\n\
         curl -sN http://{addr}/v1/chat/completions -H 'Authorization: Bearer sk-demo-us' -H 'Content-Type: application/json' \\\n     -d '{{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n\
         curl -s http://{addr}/v1/models -H 'Authorization: Bearer sk-demo-cn'\n\
         for i in 1 2 3 4; do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{addr}/v1/chat/completions \\\n     -H 'Authorization: Bearer sk-demo-limited' -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[]}}'; done\n\
         curl -s http://{admin}/metrics | grep '^customs_requests_total'\n\
         cargo run --release -- explain --config config --tenant demo-cn --model gpt-4o\n\n\
         # the audit trail (in ./{DEMO_AUDIT_DIR}), the kill switch, screening and the foreign-access report:\n\
         cargo run --release -- audit verify --allow-open {DEMO_AUDIT_DIR}\n\
         curl -s -X POST http://{admin}/admin/tenants/demo-de/suspend -H \"Authorization: Bearer {token}\" \\\n     -d '{{\"by\":\"you@example.com\",\"reason\":\"trying the kill switch\"}}'\n\
         cargo run --release -- screen --config config\n\
         cargo run --release -- report --audit {DEMO_AUDIT_DIR} --since {today} --config config --format html -o report.html\n\n\
         Ctrl-C stops the demo (the trail is closed with a stop record).\n",
        chat("sk-demo-us", "gpt-4o"),
        chat("sk-demo-cn", "gpt-4o"),
        messages("sk-demo-cn", false),
        responses,
        messages("sk-demo-us", true),
    )
}
