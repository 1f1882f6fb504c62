//! Compiles `gateway.toml` into [`Settings`]: every unset key takes its default, and a value that
//! parses but cannot work, such as a zero body limit or timeout, is an error.

use super::ctx::Ctx;
use crate::config::error::Source;
use crate::config::raw::{ClusterSection, GatewayFile, TlsSection};
use crate::config::settings::{
    AdminSettings, AuditSettings, ClusterSettings, ClusterUrl, LimitSettings, OutlierSettings, ReloadSettings,
    ReportDefaults, ResponseSettings, ServerSettings, Settings, TlsSettings, UpstreamSettings,
};

pub(super) fn compile_gateway(ctx: &mut Ctx, src: &Source, g: GatewayFile) -> Settings {
    let d = Settings::default();
    let settings = Settings {
        server: ServerSettings {
            listen: g.server.listen.unwrap_or(d.server.listen),
            admin_listen: g.server.admin_listen.unwrap_or(d.server.admin_listen),
            max_body_bytes: g.server.max_body_bytes.unwrap_or(d.server.max_body_bytes),
            max_buffered_body_bytes: g.server.max_buffered_body_bytes.unwrap_or(d.server.max_buffered_body_bytes),
            header_read_timeout: g.server.header_read_timeout.unwrap_or(d.server.header_read_timeout),
            body_read_timeout: g.server.body_read_timeout.unwrap_or(d.server.body_read_timeout),
            max_connections: g.server.max_connections.unwrap_or(d.server.max_connections),
            min_body_rate: g.server.min_body_rate.unwrap_or(d.server.min_body_rate),
            body_rate_grace: g.server.body_rate_grace.unwrap_or(d.server.body_rate_grace),
            max_memory_bytes: g.server.max_memory_bytes,
            max_header_bytes: g.server.max_header_bytes.unwrap_or(d.server.max_header_bytes),
            max_header_fields: g.server.max_header_fields.unwrap_or(d.server.max_header_fields),
            idle_timeout: g.server.idle_timeout.unwrap_or(d.server.idle_timeout),
            http2_keep_alive_interval: g.server.http2_keep_alive_interval.unwrap_or(d.server.http2_keep_alive_interval),
            http2_keep_alive_timeout: g.server.http2_keep_alive_timeout.unwrap_or(d.server.http2_keep_alive_timeout),
            shutdown_grace: g.server.shutdown_grace.unwrap_or(d.server.shutdown_grace),
            tls: tls(ctx, src, "server.tls", g.server.tls),
        },
        upstream: UpstreamSettings {
            connect_timeout: g.upstream.connect_timeout.unwrap_or(d.upstream.connect_timeout),
            first_byte_timeout: g.upstream.first_byte_timeout.unwrap_or(d.upstream.first_byte_timeout),
            pool_idle_timeout: g.upstream.pool_idle_timeout.unwrap_or(d.upstream.pool_idle_timeout),
            stream_idle_timeout: g.upstream.stream_idle_timeout.unwrap_or(d.upstream.stream_idle_timeout),
            stream_max_duration: g.upstream.stream_max_duration.unwrap_or(d.upstream.stream_max_duration),
            max_in_flight: g.upstream.max_in_flight.unwrap_or(d.upstream.max_in_flight),
            ca_file: g.upstream.ca_file.inspect(|path| {
                if let Err(e) = crate::tls::roots(path) {
                    ctx.err(src, None, "upstream.ca_file", e.to_string());
                }
            }),
            outlier: OutlierSettings {
                consecutive_failures: g
                    .upstream
                    .outlier
                    .consecutive_failures
                    .unwrap_or(d.upstream.outlier.consecutive_failures),
                ejection: g.upstream.outlier.ejection.unwrap_or(d.upstream.outlier.ejection),
                max_ejection: g.upstream.outlier.max_ejection.unwrap_or(d.upstream.outlier.max_ejection),
            },
        },
        responses: ResponseSettings {
            max_bound_ids: g.responses.max_bound_ids.unwrap_or(d.responses.max_bound_ids),
            bound_for: g.responses.bound_for.unwrap_or(d.responses.bound_for),
        },
        limits: LimitSettings {
            default_max_tokens: g.limits.default_max_tokens.unwrap_or(d.limits.default_max_tokens),
            bytes_per_token: g.limits.bytes_per_token.unwrap_or(d.limits.bytes_per_token),
        },
        audit: AuditSettings {
            dir: g.audit.dir,
            max_file_bytes: g.audit.max_file_bytes.unwrap_or(d.audit.max_file_bytes),
            queue: g.audit.queue.unwrap_or(d.audit.queue),
            on_failure: g.audit.on_failure.unwrap_or(d.audit.on_failure),
            sync: g.audit.sync.unwrap_or(d.audit.sync),
            key_env: g.audit.key_env,
        },
        admin: AdminSettings {
            token_env: g.admin.token_env.unwrap_or(d.admin.token_env),
            state_file: g.admin.state_file,
            max_connections: g.admin.max_connections.unwrap_or(d.admin.max_connections),
            tls: tls(ctx, src, "admin.tls", g.admin.tls),
        },
        reload: ReloadSettings {
            watch: g.reload.watch.unwrap_or(d.reload.watch),
            debounce: g.reload.debounce.unwrap_or(d.reload.debounce),
        },
        report: ReportDefaults { home_jurisdictions: g.report.home_jurisdictions, flops_line: g.report.flops_line },
        cluster: g.cluster.and_then(|c| compile_cluster(ctx, src, c)),
    };
    check(ctx, src, &settings);
    settings
}

fn compile_cluster(ctx: &mut Ctx, src: &Source, c: ClusterSection) -> Option<ClusterSettings> {
    let url = match (c.url, c.url_env) {
        (Some(_), Some(_)) => {
            ctx.err(src, None, "cluster.url", "set either `url` or `url_env`, not both");
            return None;
        }
        (None, None) => {
            ctx.err(src, None, "cluster", "names no store: set `url_env` (or `url` when it has no password)");
            return None;
        }
        (Some(url), None) => {
            // A password written here would sit in the config folder and in its version control.
            let password =
                url.split_once("://").and_then(|(_, rest)| rest.split('/').next()).is_some_and(|a| a.contains('@'));
            if password {
                ctx.err(
                    src,
                    None,
                    "cluster.url",
                    "holds credentials; put the URL in an environment variable and name it in `url_env`",
                );
                return None;
            }
            check_url(ctx, src, "cluster.url", &url);
            ClusterUrl::Literal(url)
        }
        (None, Some(var)) => {
            match ctx.env(&var) {
                Some(v) if !v.is_empty() => check_url(ctx, src, "cluster.url_env", &v),
                _ => ctx.err(src, None, "cluster.url_env", format!("environment variable {var} is not set")),
            }
            ClusterUrl::Env(var)
        }
    };
    let settings = ClusterSettings {
        url,
        key_prefix: c.key_prefix.unwrap_or_else(|| ClusterSettings::DEFAULT_PREFIX.to_owned()),
        replica_id: c.replica_id,
        timeout: c.timeout.unwrap_or(ClusterSettings::DEFAULT_TIMEOUT),
        max_staleness: c.max_staleness.unwrap_or(ClusterSettings::DEFAULT_MAX_STALENESS),
        fail_closed: c.fail_closed,
        lease_fraction: c.lease_fraction.unwrap_or(ClusterSettings::DEFAULT_LEASE_FRACTION),
    };
    if settings.timeout.is_zero() {
        ctx.err(src, None, "cluster.timeout", "must be greater than zero");
    }
    if settings.max_staleness <= settings.timeout {
        ctx.err(src, None, "cluster.max_staleness", "must be longer than `cluster.timeout`");
    }
    if !(settings.lease_fraction > 0.0 && settings.lease_fraction <= 1.0) {
        ctx.err(src, None, "cluster.lease_fraction", "must be above 0 and at most 1");
    }
    Some(settings)
}

/// A listener's TLS files, checked to load now so that `customs check` finds a bad path or PEM
/// before a deploy does.
fn tls(ctx: &mut Ctx, src: &Source, key: &str, section: Option<TlsSection>) -> Option<TlsSettings> {
    let section = section?;
    if key == "admin.tls" && section.client_ca_file.is_some() {
        ctx.err(src, None, "admin.tls.client_ca_file", "is for [server.tls] only: the admin API takes its token");
    }
    let settings = TlsSettings {
        cert_file: section.cert_file,
        key_file: section.key_file,
        client_ca_file: section.client_ca_file,
    };
    if let Err(e) = crate::tls::acceptor(&settings) {
        ctx.err(src, None, key, e.to_string());
    }
    Some(settings)
}

/// The URL's shape only; the store is reached at start-up. The message never repeats the URL,
/// which may hold a password.
fn check_url(ctx: &mut Ctx, src: &Source, key: &str, url: &str) {
    if let Err(e) = redis::Client::open(url) {
        let kind = format!("{:?}", e.kind());
        ctx.err(src, None, key, format!("is not a redis://, rediss:// or unix:// URL ({kind})"));
    }
}

fn check(ctx: &mut Ctx, src: &Source, s: &Settings) {
    let zero = |d: std::time::Duration| d.is_zero();
    let checks = [
        (s.server.max_body_bytes == 0, "server.max_body_bytes"),
        (s.server.max_connections == 0, "server.max_connections"),
        (s.admin.max_connections == 0, "admin.max_connections"),
        (zero(s.server.header_read_timeout), "server.header_read_timeout"),
        (zero(s.server.body_read_timeout), "server.body_read_timeout"),
        (zero(s.server.idle_timeout), "server.idle_timeout"),
        (zero(s.server.http2_keep_alive_timeout), "server.http2_keep_alive_timeout"),
        (s.server.max_header_fields == 0, "server.max_header_fields"),
        (zero(s.upstream.connect_timeout), "upstream.connect_timeout"),
        (zero(s.upstream.first_byte_timeout), "upstream.first_byte_timeout"),
        (zero(s.upstream.stream_idle_timeout), "upstream.stream_idle_timeout"),
        (zero(s.upstream.stream_max_duration), "upstream.stream_max_duration"),
        (s.upstream.max_in_flight == 0, "upstream.max_in_flight"),
        (s.upstream.outlier.consecutive_failures == 0, "upstream.outlier.consecutive_failures"),
        (zero(s.upstream.outlier.ejection), "upstream.outlier.ejection"),
        (s.limits.bytes_per_token == 0, "limits.bytes_per_token"),
        (s.responses.max_bound_ids == 0, "responses.max_bound_ids"),
        (zero(s.responses.bound_for), "responses.bound_for"),
    ];
    for (bad, key) in checks {
        if bad {
            ctx.err(src, None, key, "must be greater than zero");
        }
    }
    if s.server.max_header_bytes < 1024 {
        ctx.err(src, None, "server.max_header_bytes", "must be at least 1024");
    }
    if s.upstream.outlier.max_ejection < s.upstream.outlier.ejection {
        ctx.err(src, None, "upstream.outlier.max_ejection", "must be at least upstream.outlier.ejection");
    }
    if s.server.max_buffered_body_bytes < s.server.max_body_bytes {
        ctx.err(
            src,
            None,
            "server.max_buffered_body_bytes",
            "must be at least server.max_body_bytes, or no body that size is ever read",
        );
    }
}
