//! The admin listener's routes. Open: `/metrics` (Prometheus text format), `/healthz` (the
//! process is up), `/readyz` (a policy is loaded, it knows upstreams, and the audit trail takes
//! records). Behind `Authorization: Bearer <admin token>`: `POST /admin/reload`,
//! `GET /admin/suspensions`, `POST /admin/tenants/{id}/suspend` and `.../reinstate`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::json;

use super::AdminState;
use super::reload::{self, ReloadError};
use crate::audit::record::timestamp;
use crate::cluster::Cluster;
use crate::gateway::Shared;
use crate::killswitch::Suspension;
use crate::snapshot::Snapshot;

const MAX_BODY: usize = 64 * 1024;
const MAX_TEXT: usize = 1000;

type Reply = (StatusCode, &'static str, String);

pub async fn handle<B>(admin: Arc<AdminState>, req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (status, content_type, body) = route(&admin, req).await;
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(res)
}

const JSON: &str = "application/json";

fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    (status, JSON, body.to_string())
}

fn error(status: StatusCode, message: &str) -> Reply {
    reply(status, json!({ "error": { "message": message, "code": status.as_u16() } }))
}

async fn route<B>(admin: &AdminState, req: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let shared = &admin.shared;
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", shared.metrics.render())
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain; charset=utf-8", "ok\n".to_owned()),
        (&Method::GET, "/readyz") => readyz(shared),
        (_, p) if p.starts_with("/admin/") => {
            if let Err(r) = authorize(admin, &req) {
                return r;
            }
            act(admin, req, &path).await
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn readyz(shared: &Shared) -> Reply {
    let snapshot = shared.snapshot.load();
    let policy = &snapshot.policy;
    let audit = match (shared.audit.enabled(), shared.audit.healthy()) {
        (false, _) => "disabled",
        (true, true) => "ok",
        (true, false) => "failing",
    };
    // A replica that cannot confirm the cluster's kill switch is drained by the load balancer.
    let cluster_current = shared.cluster.as_ref().map(|c| !c.health.stale_at(std::time::Instant::now()));
    let ready = !policy.endpoints().is_empty() && shared.audit.healthy() && cluster_current != Some(false);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "policy_version": policy.version(),
        "tenants": policy.tenants().len(),
        "models": policy.models().len(),
        "endpoints": policy.endpoints().len(),
        "audit": audit,
        // An unkeyed chain can be recomputed by anyone who can edit the trail.
        "audit_chain": if !shared.audit.enabled() { "none" } else if shared.audit.keyed() { "hmac-sha256" } else { "sha256-unkeyed" },
        "kill_switch_suspended": snapshot.kill_switched_count(),
        "cluster": match (&shared.cluster, cluster_current) {
            (Some(c), Some(current)) => json!({
                "replica": c.replica, "current": current, "applied_epoch": c.health.applied(),
            }),
            _ => serde_json::Value::Null,
        },
    });
    reply(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}

fn authorize<B>(admin: &AdminState, req: &Request<B>) -> Result<(), Reply> {
    if !admin.writes_enabled() {
        let msg = format!("The admin API is off: set {} to a token to turn it on.", admin.token_env);
        return Err(error(StatusCode::FORBIDDEN, &msg));
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if admin.token_matches(presented) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "A valid admin token is required (Authorization: Bearer ...)."))
    }
}

async fn act<B>(admin: &AdminState, req: Request<B>, path: &str) -> Reply
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let shared = &admin.shared;
    let method = req.method().clone();
    if path == "/admin/reload" {
        if method != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        }
        return match reload::reload(admin, "admin").await {
            Ok(r) => reply(
                StatusCode::OK,
                json!({
                    "policy_version": r.version, "previous_version": r.previous, "changed": r.changed(),
                    "restart_required": r.restart_required,
                }),
            ),
            Err(ReloadError::Config(errors)) => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": { "message": "The new config is invalid; the running policy is unchanged.", "code": 422 },
                    "errors": errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
    }
    if path == "/admin/suspensions" {
        if method != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        let snapshot = shared.snapshot.load();
        let list: serde_json::Map<_, _> = snapshot
            .suspensions
            .iter()
            .map(|(id, s)| (id.clone(), json!({ "reason": s.reason, "by": s.by, "at": s.at })))
            .collect();
        return reply(StatusCode::OK, json!({ "suspended": list }));
    }
    if path == "/admin/cluster" {
        if method != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        let Some(cluster) = &shared.cluster else {
            return error(StatusCode::NOT_FOUND, "not in cluster mode: gateway.toml has no [cluster]");
        };
        let asked = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("epoch=")));
        let asked = match asked.map(str::parse::<u64>) {
            None => None,
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "`epoch` must be a whole number"),
        };
        return match super::cluster::report(cluster, asked).await {
            Ok(body) => reply(StatusCode::OK, body),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        };
    }
    let Some(rest) = path.strip_prefix("/admin/tenants/") else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let (tenant, action) = match rest.rsplit_once('/') {
        Some((t, a @ ("suspend" | "reinstate"))) if !t.is_empty() && !t.contains('/') => (t.to_owned(), a),
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    if method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "the body could not be read (at most 64 KiB)"),
    };
    let action_body: ActionBody = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("expected {{\"by\": ..., \"reason\": ...}}: {e}")),
    };
    if action_body.by.trim().is_empty() || action_body.reason.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`by` and `reason` are required");
    }
    if action_body.by.len() > MAX_TEXT || action_body.reason.len() > MAX_TEXT {
        return error(StatusCode::BAD_REQUEST, "`by` and `reason` are limited to 1000 bytes");
    }
    kill_switch(admin, &tenant, action == "suspend", action_body).await
}

/// Cluster mode: the change is made in the store (where every replica reads it) and then applied
/// here at once. If the store cannot take it, nothing changes anywhere and the reply says so: a
/// suspension held by one replica alone would be lifted again by the store's set.
async fn cluster_kill_switch(
    admin: &AdminState,
    cluster: &Cluster,
    tenant: &str,
    suspend: bool,
    body: ActionBody,
) -> Reply {
    let shared = &admin.shared;
    if shared.snapshot.load().policy.tenant_by_id(tenant).is_none() {
        return error(StatusCode::NOT_FOUND, "no such tenant in the running policy");
    }
    let at = timestamp(SystemTime::now());
    let result = if suspend {
        let s = Suspension { reason: body.reason.clone(), by: body.by.clone(), at: at.clone() };
        cluster.suspend(tenant, &s).await.map(|epoch| (true, epoch))
    } else {
        cluster.reinstate(tenant).await
    };
    let action = if suspend { "suspend" } else { "reinstate" };
    let mut fields = serde_json::Map::new();
    fields.insert("tenant".into(), tenant.into());
    fields.insert("by".into(), body.by.into());
    fields.insert("reason".into(), body.reason.into());
    fields.insert("replica".into(), cluster.replica.as_str().into());
    let (changed, epoch) = match result {
        Ok(r) => r,
        Err(e) => {
            shared.metrics.cluster_errors.inc();
            fields.insert("changed".into(), false.into());
            fields.insert("error".into(), e.to_string().into());
            shared.audit.admin(action, fields);
            tracing::error!(tenant, action, error = %e, "Kill switch not changed: the cluster store did not take it.");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "error": { "message": format!("not applied on any replica: {e}"), "code": 503 },
                    "tenant": tenant, "suspended": !suspend,
                }),
            );
        }
    };
    fields.insert("changed".into(), changed.into());
    fields.insert("epoch".into(), epoch.into());
    shared.audit.admin(action, fields);
    tracing::warn!(tenant, action, changed, epoch, "Kill switch used (cluster).");
    // Applied here now rather than at the next poll; the other replicas hear of it by the channel.
    if changed && let Ok(state) = cluster.state().await {
        super::cluster::apply(admin, cluster, state).await;
    }
    reply(
        StatusCode::OK,
        json!({ "tenant": tenant, "suspended": suspend, "changed": changed, "at": at, "epoch": epoch }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    by: String,
    reason: String,
}

/// Suspends or reinstates `tenant`: persisted first, then swapped in, then audited. If the state
/// cannot be saved the change still applies to this process (stopping misuse now matters more)
/// and the reply says it did not persist.
async fn kill_switch(admin: &AdminState, tenant: &str, suspend: bool, body: ActionBody) -> Reply {
    let shared = &admin.shared;
    if let Some(cluster) = &shared.cluster {
        return cluster_kill_switch(admin, cluster, tenant, suspend, body).await;
    }
    let _one_at_a_time = admin.lock.lock().await;
    let current = shared.snapshot.load_full();
    if current.policy.tenant_by_id(tenant).is_none() {
        return error(StatusCode::NOT_FOUND, "no such tenant in the running policy");
    }
    let at = timestamp(SystemTime::now());
    let (next, changed) = if suspend {
        let s = Suspension { reason: body.reason.clone(), by: body.by.clone(), at: at.clone() };
        (current.suspensions.with(tenant, s), true)
    } else {
        current.suspensions.without(tenant)
    };
    let persisted = match &admin.state_file {
        Some(path) if changed => {
            let path = path.clone();
            let to_save = next.clone();
            match tokio::task::spawn_blocking(move || to_save.save(&path)).await {
                Ok(Ok(())) => Ok(true),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        Some(_) => Ok(true),
        None => Ok(false),
    };
    if changed {
        let snapshot: Snapshot = current.with_suspensions(Arc::new(next), &shared.metrics);
        shared.snapshot.store(Arc::new(snapshot));
    }
    let action = if suspend { "suspend" } else { "reinstate" };
    let mut fields = serde_json::Map::new();
    fields.insert("tenant".into(), tenant.into());
    fields.insert("by".into(), body.by.into());
    fields.insert("reason".into(), body.reason.into());
    fields.insert("changed".into(), changed.into());
    fields.insert("persisted".into(), persisted.as_ref().is_ok_and(|p| *p).into());
    shared.audit.admin(action, fields);
    tracing::warn!(tenant, action, changed, "Kill switch used.");
    let state = json!({ "tenant": tenant, "suspended": suspend, "changed": changed, "at": at });
    match persisted {
        Ok(persisted) => {
            let mut state = state;
            state["persisted"] = persisted.into();
            reply(StatusCode::OK, state)
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({
                "error": { "message": format!("applied to this process but not saved: {e}"), "code": 500 },
                "tenant": tenant, "suspended": suspend, "persisted": false,
            }),
        ),
    }
}
