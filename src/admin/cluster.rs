//! The admin side of cluster mode: the loop that keeps this replica's kill switch in step with
//! the store, applying the store's set (from that loop, or at once after an admin change made
//! here), and `GET /admin/cluster`, which says which replicas have applied which epoch.
//!
//! The loop sends a heartbeat every [`POLL`] that also reads the store's epoch, subscribes to the
//! epoch channel so a change is applied at once rather than at the next poll, and reads and
//! applies the store's whole set whenever its epoch differs from the one applied. A call that
//! fails or times out leaves the last applied set in force; the replica turns stale once
//! `max_staleness` passes without a confirmation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::PubSubStream;
use serde_json::json;

use super::AdminState;
use crate::cluster::{Cluster, ClusterError, State};

/// How often the store's epoch is read when the channel is quiet. Well under a second, so a
/// missed message still reaches every replica within one.
pub const POLL: Duration = Duration::from_millis(250);

/// Runs until aborted (at shutdown).
pub async fn run(admin: Arc<AdminState>, cluster: Arc<Cluster>) {
    let metrics = admin.shared.metrics.clone();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events: Option<PubSubStream> = None;
    let mut was_current = None;
    loop {
        match events.as_mut() {
            Some(stream) => {
                tokio::select! {
                    _ = tick.tick() => {}
                    msg = stream.next() => if msg.is_none() {
                        // The subscription's connection is gone; polling covers until it is back.
                        events = None;
                    },
                }
            }
            None => {
                tick.tick().await;
                events = subscribe(&cluster).await.ok();
            }
        }
        let started = Instant::now();
        let result = step(&admin, &cluster).await;
        if let Err(e) = &result {
            metrics.cluster_errors.inc();
            tracing::debug!(error = %e, "Cluster store call failed.");
        }
        if result.is_ok() {
            cluster.health.confirm(started);
        }
        let current = !cluster.health.stale_at(Instant::now());
        metrics.cluster_stale.set(i64::from(!current));
        if was_current != Some(current) {
            match (&result, current) {
                (_, true) => tracing::info!(epoch = cluster.health.applied(), "Cluster kill switch is current."),
                (Err(e), false) => tracing::error!(error = %e, max_staleness = ?cluster.health.max_staleness,
                    "Cluster kill switch could not be confirmed: this replica is not ready and refuses fail-closed jurisdictions."),
                (Ok(_), false) => tracing::error!("Cluster kill switch is not current."),
            }
            was_current = Some(current);
        }
    }
}

async fn subscribe(cluster: &Cluster) -> Result<PubSubStream, ClusterError> {
    let connect = async {
        let mut pubsub = cluster.client().get_async_pubsub().await?;
        pubsub.subscribe(cluster.channel()).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    match tokio::time::timeout(cluster.timeout, connect).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ClusterError::Timeout(cluster.timeout)),
    }
}

/// One round: heartbeat, and apply the store's set if its epoch moved. `Ok` means the store's
/// epoch is now the applied one.
async fn step(admin: &AdminState, cluster: &Cluster) -> Result<(), ClusterError> {
    let store = cluster.heartbeat().await?;
    let applied = cluster.health.applied();
    if store == applied {
        return Ok(());
    }
    if store < applied {
        // The store lost what it had: give it back this replica's set, then read whatever won.
        let ours = admin.shared.snapshot.load().suspensions.clone();
        if cluster.reseed(applied, &ours).await? {
            tracing::warn!(epoch = applied, "Cluster store had lost the kill switch; restored it from this replica.");
            admin.shared.audit.admin("cluster_reseed", fields(cluster, applied));
        }
    }
    let state = cluster.state().await?;
    match apply(admin, cluster, state).await {
        Applied::Newer | Applied::Same => Ok(()),
        // Another reseed is racing this one: the next round reads the winner.
        Applied::Older => Err(ClusterError::Store("the store's epoch went back; retrying".into())),
    }
}

fn fields(cluster: &Cluster, epoch: u64) -> serde_json::Map<String, serde_json::Value> {
    let mut f = serde_json::Map::new();
    f.insert("replica".into(), cluster.replica.as_str().into());
    f.insert("epoch".into(), epoch.into());
    f
}

/// What applying a set read from the store did.
pub enum Applied {
    /// The set was newer than the applied one and is now in force.
    Newer,
    /// Already in force.
    Same,
    /// Older than the applied one: ignored.
    Older,
}

/// Swaps in the store's set if it is newer than this replica's, keeps a copy in the state file
/// (what a restart starts from if the store is then down) and writes a `cluster_epoch` record.
pub async fn apply(admin: &AdminState, cluster: &Cluster, state: State) -> Applied {
    let shared = &admin.shared;
    let _one_at_a_time = admin.lock.lock().await;
    let previous = cluster.health.applied();
    if state.epoch < previous {
        return Applied::Older;
    }
    if state.epoch == previous {
        return Applied::Same;
    }
    let current = shared.snapshot.load_full();
    let added: Vec<&str> = state
        .suspensions
        .iter()
        .filter(|(t, _)| current.suspensions.get(t).is_none())
        .map(|(t, _)| t.as_str())
        .collect();
    let removed: Vec<&str> = current
        .suspensions
        .iter()
        .filter(|(t, _)| state.suspensions.get(t).is_none())
        .map(|(t, _)| t.as_str())
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("replica".into(), cluster.replica.as_str().into());
    fields.insert("epoch".into(), state.epoch.into());
    fields.insert("previous_epoch".into(), previous.into());
    fields.insert("suspended".into(), state.suspensions.len().into());
    fields.insert("added".into(), json!(added));
    fields.insert("removed".into(), json!(removed));
    let next = Arc::new(state.suspensions);
    shared.snapshot.store(Arc::new(current.with_suspensions(next.clone(), &shared.metrics)));
    cluster.health.set_applied(state.epoch);
    shared.metrics.killswitch_epoch.set(i64::try_from(state.epoch).unwrap_or(i64::MAX));
    shared.audit.admin("cluster_epoch", fields);
    tracing::info!(epoch = state.epoch, previous, "Cluster kill switch applied.");
    if let Some(path) = admin.state_file.clone() {
        match tokio::task::spawn_blocking(move || next.save(&path)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "Kill-switch state file not updated."),
            Err(e) => tracing::error!(error = %e, "Kill-switch state file not updated."),
        }
    }
    Applied::Newer
}

/// `GET /admin/cluster[?epoch=N]`: this replica's view, and every replica the store has heard
/// from with the epoch it applied; with `epoch`, which have applied it and which have not.
pub async fn report(cluster: &Cluster, asked: Option<u64>) -> Result<serde_json::Value, crate::cluster::ClusterError> {
    let replicas = cluster.replicas().await?;
    let store_epoch = cluster.epoch().await?;
    let epoch = asked.unwrap_or(store_epoch);
    let (applied, pending): (Vec<_>, Vec<_>) = replicas.iter().partition(|r| r.epoch >= epoch);
    Ok(json!({
        "replica": cluster.replica,
        "applied_epoch": cluster.health.applied(),
        "current": !cluster.health.stale_at(std::time::Instant::now()),
        "confirmed_ms_ago": cluster.health.confirmed_ago().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "store_epoch": store_epoch,
        "epoch": epoch,
        "applied_by": applied.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "pending": pending.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "replicas": replicas.iter().map(|r| json!({"id": r.id, "epoch": r.epoch, "seen_ms_ago": r.seen_ms_ago})).collect::<Vec<_>>(),
    }))
}
