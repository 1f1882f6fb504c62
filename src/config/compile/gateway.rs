//! Checks `gateway.toml`: the values that parse but cannot work, such as a zero body limit or
//! timeout.

use super::ctx::Ctx;
use crate::config::error::Source;
use crate::config::raw::GatewayFile;

pub(super) fn check_gateway(ctx: &mut Ctx, src: &Source, g: &GatewayFile) {
    let zero = |d: std::time::Duration| d.is_zero();
    let checks = [
        (g.server.max_body_bytes == 0, "server.max_body_bytes"),
        (g.server.max_connections == 0, "server.max_connections"),
        (zero(g.server.header_read_timeout), "server.header_read_timeout"),
        (zero(g.server.body_read_timeout), "server.body_read_timeout"),
        (zero(g.upstream.connect_timeout), "upstream.connect_timeout"),
        (zero(g.upstream.first_byte_timeout), "upstream.first_byte_timeout"),
        (g.limits.bytes_per_token == 0, "limits.bytes_per_token"),
    ];
    for (bad, key) in checks {
        if bad {
            ctx.err(src, None, key, "must be greater than zero");
        }
    }
}
