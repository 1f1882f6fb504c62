//! Cluster mode against a real Redis (`redis-server`, started by each test on a free port) and
//! several replicas of the real binary: a suspension made on one replica is refused on the others
//! within a second; a tenant's request rate, concurrency and compute budget hold across them;
//! with the store down, replicas turn stale, drain, refuse fail-closed jurisdictions while
//! keeping the suspensions they had, and decide limits on their share; an emptied store is given
//! the suspensions back.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tempfile::TempDir;

use crate::support::{
    ADMIN_TOKEN, EXAMPLE_DAY, Serving, admin_post, chat, edit_file, example_config_for, load_err, mock, scrape, send,
    serve_with, trail, value,
};

/// A `redis-server` of the test's own, without persistence: a restart comes back empty.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::on(port)
    }

    fn on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // The store is a service outside the gateway: it keeps the real clock when the suite
            // runs under faketime (which hangs redis-server at start).
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; tests/run installs it)");
        let mut redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on {port}");
            if let Ok(Some(status)) = redis.child.try_wait() {
                panic!("redis-server exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One replica: `customs serve` on its own copy of the example config (its own trail and state
/// file), sharing the store.
struct Replica {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    dir: TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CLUSTER: &str = r#"
[cluster]
url_env = "CUSTOMS_CLUSTER_URL"
replica_id = "REPLICA"
max_staleness = "1s"
timeout = "200ms"
fail_closed = ["d5-macau"]
"#;

fn replica(id: &str, upstream: SocketAddr, redis: &Redis) -> Replica {
    replica_with(id, upstream, redis, |_| {})
}

/// A replica whose config folder `prepare` edits first; `[cluster]` is gateway.toml's last table.
fn replica_with(id: &str, upstream: SocketAddr, redis: &Redis, prepare: impl Fn(&Path)) -> Replica {
    let dir = example_config_for(upstream);
    edit_file(dir.path(), "gateway.toml", "watch = true", "watch = false");
    let gateway = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    std::fs::write(dir.path().join("gateway.toml"), gateway + &CLUSTER.replace("REPLICA", id)).unwrap();
    prepare(dir.path());
    let mut command = Command::new(env!("CARGO_BIN_EXE_customs"));
    command.env("CUSTOMS_CLUSTER_URL", redis.url());
    let Serving { child, addr, admin } = serve_with(dir.path(), command, &["--at", EXAMPLE_DAY]);
    Replica { child, addr, admin, dir }
}

async fn admin_get(admin: SocketAddr, path: &str) -> crate::support::Reply {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    send(admin, Method::GET, path, &[("authorization", auth.as_str())], String::new()).await
}

async fn ready(r: &Replica) -> StatusCode {
    send(r.admin, Method::GET, "/readyz", &[], String::new()).await.status
}

/// Polls `check` until it holds or `within` passes; returns how long it took.
async fn until<F: Future<Output = bool>>(within: Duration, what: &str, mut check: impl FnMut() -> F) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn records(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    trail(&dir.join("audit")).into_iter().filter(|r| r["type"] == kind).collect()
}

fn verify(dir: &Path) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_customs")).args(["audit", "verify"]).arg(dir.join("audit")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "audit verify failed: {text}");
    text
}

fn stop(r: &mut Replica) {
    assert!(Command::new("kill").args(["-TERM", &r.child.id().to_string()]).status().unwrap().success());
    assert!(r.child.wait().unwrap().success());
}

#[tokio::test]
async fn a_suspension_made_on_one_replica_is_refused_on_every_replica_within_a_second() {
    let redis = Redis::start();
    let upstream = mock("cluster").await;
    let mut replicas: Vec<Replica> = ["r1", "r2", "r3"].iter().map(|id| replica(id, upstream.addr, &redis)).collect();
    for r in &replicas {
        until(Duration::from_secs(5), "replica ready", || async { ready(r).await == StatusCode::OK }).await;
        assert_eq!(chat(r.addr, "sk-demo-us", "gpt-4o-mini", None).await.status, StatusCode::OK);
    }

    let made = Instant::now();
    let r =
        admin_post(replicas[0].admin, "/admin/tenants/demo-us/suspend", r#"{"by":"alice","reason":"misuse"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let epoch = r.json()["epoch"].as_u64().unwrap();
    assert!(epoch >= 1);
    for r in &replicas[1..] {
        until(Duration::from_secs(1).saturating_sub(made.elapsed()), "suspension refused on every replica", || async {
            chat(r.addr, "sk-demo-us", "gpt-4o-mini", None).await.code() == "tenant_suspended"
        })
        .await;
    }
    // Every replica reports the epoch, and any replica can tell who has applied it.
    for r in &replicas {
        assert_eq!(value(&scrape(r.admin).await, "customs_killswitch_epoch", &[]), epoch as f64);
    }
    until(Duration::from_secs(2), "every replica's heartbeat reports the epoch", || async {
        let report = admin_get(replicas[2].admin, &format!("/admin/cluster?epoch={epoch}")).await.json();
        report["applied_by"] == serde_json::json!(["r1", "r2", "r3"]) && report["pending"] == serde_json::json!([])
    })
    .await;
    let report = admin_get(replicas[1].admin, "/admin/cluster").await.json();
    assert_eq!(report["store_epoch"], epoch);
    assert_eq!(report["replica"], "r2");
    assert_eq!(report["current"], true);

    // Lifted on another replica, lifted everywhere.
    let lifted = Instant::now();
    let r =
        admin_post(replicas[2].admin, "/admin/tenants/demo-us/reinstate", r#"{"by":"bob","reason":"cleared"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["changed"], true);
    until(Duration::from_secs(1).saturating_sub(lifted.elapsed()), "reinstated on r1", || async {
        chat(replicas[0].addr, "sk-demo-us", "gpt-4o-mini", None).await.status == StatusCode::OK
    })
    .await;

    for r in &mut replicas {
        stop(r);
        // Each replica recorded both epochs it applied, naming the tenant.
        let applied = records(r.dir.path(), "cluster_epoch");
        assert!(
            applied.iter().any(|a| a["epoch"] == epoch && a["added"] == serde_json::json!(["demo-us"])),
            "{applied:?}"
        );
        assert!(applied.iter().any(|a| a["epoch"] == epoch + 1 && a["removed"] == serde_json::json!(["demo-us"])));
        verify(r.dir.path());
    }
    trails_of_several_replicas_verify_and_report_together(&replicas);
    upstream.stop().await;
}

/// `customs audit verify` and `customs report` over the three replicas' trails at once: each
/// chain is checked on its own, the report counts them all, and an edit in one trail is named.
fn trails_of_several_replicas_verify_and_report_together(replicas: &[Replica]) {
    let dirs: Vec<_> = replicas.iter().map(|r| r.dir.path().join("audit")).collect();
    let customs = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_customs")).args(args).args(&dirs).output().unwrap();
    let out = customs(&["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let records: u64 = dirs.iter().map(|d| trail(d).len() as u64).sum();
    assert!(text.contains(&format!("ok: 3 trails, {records} records, ")), "{text}");
    for d in &dirs {
        assert!(text.contains(&format!("trail {}:\n  ok: ", d.display())), "{text}");
    }

    // Merged into one stream by time, each record as written and named with its trail.
    let out = customs(&["audit", "merge"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(merged.len() as u64, records);
    for d in &dirs {
        let name = d.to_string_lossy();
        let own: Vec<&serde_json::Value> =
            merged.iter().filter(|m| m["trail"] == *name).map(|m| &m["record"]).collect();
        assert_eq!(own, trail(d).iter().collect::<Vec<_>>(), "{name}: its records, in its order");
    }
    let starts: Vec<&str> = merged.iter().filter_map(|m| m["record"]["time"].as_str()).collect();
    assert_eq!(starts.first(), starts.iter().min(), "the earliest record comes first");
    assert_eq!(starts.last(), starts.iter().max(), "the latest record comes last");

    let report = |dirs: &[std::path::PathBuf]| -> serde_json::Value {
        let mut c = Command::new(env!("CARGO_BIN_EXE_customs"));
        c.args(["report", "--since", "2026-01-01", "--home", "us", "--flops-line", "0", "--format", "json"]);
        for d in dirs {
            c.arg("--audit").arg(d);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let together = report(&dirs);
    for key in ["decisions", "allowed", "denied"] {
        let apart: u64 = dirs.iter().map(|d| report(std::slice::from_ref(d))["totals"][key].as_u64().unwrap()).sum();
        assert_eq!(together["totals"][key].as_u64().unwrap(), apart, "{key}");
    }
    assert!(together["totals"]["denied"].as_u64().unwrap() >= 2, "the suspension's refusals on r2 and r3");

    // One replica's trail edited: the verdict names that trail and fails.
    let file = customs::audit::trail_files(&dirs[1]).unwrap().remove(0);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"tenant\":\"demo-us\"", "\"tenant\":\"demo-uz\"", 1)).unwrap();
    let out = customs(&["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    let r2 = text.split("trail ").find(|t| t.starts_with(&*dirs[1].to_string_lossy())).unwrap();
    assert!(r2.contains("FAIL") && r2.contains("was altered"), "{text}");
    assert!(text.contains("\nFAIL: 3 trails, "), "{text}");
}

/// A response created through one replica is its creator's on every replica, and nobody else's:
/// the binding is on the store.
#[tokio::test]
async fn a_response_bound_on_one_replica_is_its_creators_only_on_every_replica() {
    let redis = Redis::start();
    let upstream = mock("cluster-responses").await;
    let replicas: Vec<Replica> = ["r1", "r2"].iter().map(|id| replica(id, upstream.addr, &redis)).collect();
    for r in &replicas {
        until(Duration::from_secs(5), "replica ready", || async { ready(r).await == StatusCode::OK }).await;
    }
    let us = [("authorization", "Bearer sk-demo-us")];
    let body = r#"{"model":"gpt-4o-mini","input":"hi"}"#;
    let created = send(replicas[0].addr, Method::POST, "/v1/responses", &us, body).await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/responses/{id}");
    // The store is written beside the response, not before it: give it a moment.
    until(Duration::from_secs(2), "the creator reads it on the other replica", || async {
        send(replicas[1].addr, Method::GET, &path, &us, "").await.status == StatusCode::OK
    })
    .await;
    let other = send(replicas[1].addr, Method::GET, &path, &[("authorization", "Bearer sk-demo-de")], "").await;
    assert_eq!((other.status, other.code()), (StatusCode::NOT_FOUND, "response_not_found".to_owned()));
    upstream.stop().await;
}

/// Shared limits with slices of a tenth: demo-limited may make 60 requests a minute, demo-us 4
/// at a time, whichever replicas they reach.
fn shared_limits(dir: &Path) {
    let gateway = std::fs::read_to_string(dir.join("gateway.toml")).unwrap();
    std::fs::write(dir.join("gateway.toml"), gateway + "lease_fraction = 0.1\n").unwrap();
    edit_file(dir, "tenants.toml", "requests_per_minute = 3   #", "requests_per_minute = 60\n#");
    edit_file(dir, "tenants.toml", "# sk-demo-us\n", "# sk-demo-us\n[tenants.limits]\nmax_concurrent = 4\n");
    edit_file(dir, "tenants.toml", "# sk-demo-de\n", "# sk-demo-de\n[tenants.limits]\ndaily_inference_flops = 5e13\n");
}

async fn slow_chat(addr: SocketAddr, key: &str) -> crate::support::Reply {
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("x-mock-delay-ms", "1500")];
    send(addr, Method::POST, "/v1/chat/completions", &headers, crate::support::chat_body("gpt-4o-mini")).await
}

/// Sends `each` requests to every replica at once (one sender per replica); the replies.
async fn on_every_replica(
    replicas: &[Replica],
    each: usize,
    key: &'static str,
    slow: bool,
) -> Vec<crate::support::Reply> {
    let mut senders = Vec::new();
    for r in replicas {
        for _ in 0..(if slow { each } else { 1 }) {
            let addr = r.addr;
            senders.push(tokio::spawn(async move {
                let mut replies = Vec::new();
                for _ in 0..(if slow { 1 } else { each }) {
                    replies.push(if slow {
                        slow_chat(addr, key).await
                    } else {
                        chat(addr, key, "gpt-4o-mini", None).await
                    });
                }
                replies
            }));
        }
    }
    let mut replies = Vec::new();
    for s in senders {
        replies.extend(s.await.unwrap());
    }
    replies
}

/// Scripts the store has run so far (every call customs makes is one).
async fn script_calls(redis: &Redis) -> u64 {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = ::redis::cmd("INFO").arg("commandstats").query_async(&mut c).await.unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

fn tally(replies: &[crate::support::Reply], refusal: &str) -> usize {
    let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, refusal.to_owned()));
    }
    ok
}

#[tokio::test]
async fn a_tenants_limits_hold_across_three_replicas_within_the_documented_bound() {
    let redis = Redis::start();
    let upstream = mock("cluster-limits").await;
    let mut replicas: Vec<Replica> =
        ["l1", "l2", "l3"].iter().map(|id| replica_with(id, upstream.addr, &redis, shared_limits)).collect();
    for r in &replicas {
        until(Duration::from_secs(5), "replica ready", || async { ready(r).await == StatusCode::OK }).await;
    }

    // 150 requests against 60 a minute: alone, each replica would admit its 50. Together they
    // admit the minute's 60 plus what refills meanwhile (one a second), less at most the
    // slices the replicas still hold at the end (3 x 6 requests, one of them needed).
    let started = Instant::now();
    let replies = on_every_replica(&replicas, 50, "sk-demo-limited", false).await;
    let refilled = started.elapsed().as_secs() + 1;
    let ok = tally(&replies, "rate_limit_exceeded") as u64;
    assert!((60 - 15..=60 + refilled).contains(&ok), "{ok} of 150 admitted in {:?}", started.elapsed());
    // Over its limit, the tenant is refused without a round trip per request: a refusal from
    // the store holds on the replica for up to a second (the heartbeats, four a second per
    // replica, go on meanwhile).
    let calls = script_calls(&redis).await;
    let started = Instant::now();
    let replies = on_every_replica(&replicas[..1], 30, "sk-demo-limited", false).await;
    // One a second comes back meanwhile; each such admission may take a call of its own.
    let admitted = tally(&replies, "rate_limit_exceeded") as u64;
    let made = script_calls(&redis).await - calls;
    let elapsed = started.elapsed();
    assert!(admitted <= elapsed.as_secs() + 1, "{admitted} of 30 admitted in {elapsed:?}");
    let heartbeats = 3 * (elapsed.as_millis() as u64 / 250 + 1);
    assert!(made <= heartbeats + 2 + 2 * admitted, "{made} calls to the store for 30 requests in {elapsed:?}");

    // The daily compute budget: each request reserves about 1,045 tokens of an 8.03e9-parameter
    // model (1.68e13 FLOPs) and uses about 1,020, so 5e13 FLOPs a day serve 3 requests in all,
    // where each replica alone would serve 3.
    let mut senders = Vec::new();
    for r in &replicas {
        let addr = r.addr;
        senders.push(tokio::spawn(async move {
            let headers = [
                ("authorization", "Bearer sk-demo-de"),
                ("content-type", "application/json"),
                ("x-mock-chunks", "1000"),
            ];
            let body = crate::support::chat_body("llama-3.1-8b-instruct");
            let mut replies = Vec::new();
            for _ in 0..4 {
                replies.push(send(addr, Method::POST, "/v1/chat/completions", &headers, body.clone()).await);
            }
            replies
        }));
    }
    let mut replies = Vec::new();
    for s in senders {
        replies.extend(s.await.unwrap());
    }
    let served = tally(&replies, "compute_quota_exceeded");
    assert!((1..=3).contains(&served), "{served} of 12 served on a budget for 3");

    // Concurrency is exact at this size: 4 in flight across the replicas, the rest refused.
    let replies = on_every_replica(&replicas, 4, "sk-demo-us", true).await;
    assert_eq!(tally(&replies, "concurrency_limit_exceeded"), 4);
    // Every slot came back when its request ended.
    until(Duration::from_secs(2), "slots given back", || async {
        tally(&on_every_replica(&replicas[..1], 4, "sk-demo-us", true).await, "concurrency_limit_exceeded") == 4
    })
    .await;

    // A replica that dies holding slots loses them once it is missed (max_staleness, 1 s).
    let held = replicas[2].addr;
    let holding: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let auth = "Bearer sk-demo-us";
                let req = http::Request::post(format!("http://{held}/v1/chat/completions"))
                    .header("authorization", auth)
                    .header("content-type", "application/json")
                    .header("x-mock-delay-ms", "5000")
                    .body(http_body_util::Full::new(bytes::Bytes::from(crate::support::chat_body("gpt-4o-mini"))))
                    .unwrap();
                // The replica is killed under it: the reply is a broken connection.
                crate::support::client().request(req).await.is_err()
            })
        })
        .collect();
    until(Duration::from_secs(2), "two slots held on l3", || async {
        value(&scrape(replicas[2].admin).await, "customs_in_flight_requests", &[]) == 2.0
    })
    .await;
    replicas[2].child.kill().unwrap();
    for h in holding {
        assert!(h.await.unwrap(), "l3 answered after it was killed");
    }
    until(Duration::from_secs(4), "a dead replica's slots freed", || async {
        tally(&on_every_replica(&replicas[..2], 2, "sk-demo-us", true).await, "concurrency_limit_exceeded") == 4
    })
    .await;

    for r in &mut replicas[..2] {
        stop(r);
        verify(r.dir.path());
    }
    upstream.stop().await;
}

#[tokio::test]
async fn with_the_store_down_replicas_drain_fail_closed_and_keep_their_suspensions() {
    let mut redis = Redis::start();
    let upstream = mock("cluster-down").await;
    let mut replicas: Vec<Replica> = ["a", "b"].iter().map(|id| replica(id, upstream.addr, &redis)).collect();
    for r in &replicas {
        until(Duration::from_secs(5), "replica ready", || async { ready(r).await == StatusCode::OK }).await;
    }
    let r =
        admin_post(replicas[0].admin, "/admin/tenants/demo-us/suspend", r#"{"by":"alice","reason":"misuse"}"#).await;
    let epoch = r.json()["epoch"].as_u64().unwrap();
    until(Duration::from_secs(1), "suspended on b", || async {
        chat(replicas[1].addr, "sk-demo-us", "gpt-4o-mini", None).await.code() == "tenant_suspended"
    })
    .await;

    // Load on both replicas throughout: every answered request must have its record.
    let mut load = Vec::new();
    for r in &replicas {
        for key in ["sk-demo-de", "sk-demo-cn"] {
            let addr = r.addr;
            load.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                let until = Instant::now() + Duration::from_secs(6);
                while Instant::now() < until {
                    let reply = chat(addr, key, "gpt-4o-mini", Some("customer-support")).await;
                    ids.push(reply.headers["x-request-id"].to_str().unwrap().to_owned());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ids
            }));
        }
    }

    redis.stop();
    for r in &replicas {
        until(Duration::from_secs(3), "stale replica not ready", || async {
            ready(r).await == StatusCode::SERVICE_UNAVAILABLE
        })
        .await;
        let refused = chat(r.addr, "sk-demo-cn", "gpt-4o-mini", Some("customer-support")).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.code(), "cluster_unavailable");
        assert_eq!(refused.headers["retry-after"], "1");
        // Jurisdictions not marked fail-closed are served on the last set applied...
        assert_eq!(chat(r.addr, "sk-demo-de", "gpt-4o-mini", None).await.status, StatusCode::OK);
        // ...which still holds the suspension.
        assert_eq!(chat(r.addr, "sk-demo-us", "gpt-4o-mini", None).await.code(), "tenant_suspended");
        // The gauge follows at the loop's next round.
        until(Duration::from_secs(1), "customs_cluster_stale 1", || async {
            value(&scrape(r.admin).await, "customs_cluster_stale", &[]) == 1.0
        })
        .await;
        assert!(value(&scrape(r.admin).await, "customs_cluster_errors_total", &[]) > 0.0);
        // Limits fall back to this replica's share: demo-limited's 3 a minute over 2 replicas.
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(chat(r.addr, "sk-demo-limited", "gpt-4o-mini", None).await.status);
        }
        assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
        // (and demo-cn's load, until the replica turned stale)
        assert!(value(&scrape(r.admin).await, "customs_limits_fallback_total", &[]) >= 3.0);
    }
    // No change is half made while the store is away.
    let r = admin_post(replicas[1].admin, "/admin/tenants/demo-de/suspend", r#"{"by":"alice","reason":"x"}"#).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(chat(replicas[1].addr, "sk-demo-de", "gpt-4o-mini", None).await.status, StatusCode::OK);

    // The store comes back empty: the replicas give it their set back and are current again.
    let _redis = Redis::on(redis.port);
    for r in &replicas {
        until(Duration::from_secs(5), "replica ready again", || async { ready(r).await == StatusCode::OK }).await;
        assert_eq!(chat(r.addr, "sk-demo-us", "gpt-4o-mini", None).await.code(), "tenant_suspended");
        assert_eq!(chat(r.addr, "sk-demo-cn", "gpt-4o-mini", Some("customer-support")).await.status, StatusCode::OK);
    }
    let report = admin_get(replicas[0].admin, "/admin/cluster").await.json();
    assert_eq!(report["store_epoch"], epoch);

    let mut answered = Vec::new();
    for l in load {
        answered.extend(l.await.unwrap());
    }
    // Limits are shared again once the load is over: the emptied store starts demo-limited's
    // minute afresh, and no request goes to the fallback.
    let fallbacks = value(&scrape(replicas[1].admin).await, "customs_limits_fallback_total", &[]);
    for _ in 0..2 {
        assert_eq!(chat(replicas[1].addr, "sk-demo-limited", "gpt-4o-mini", None).await.status, StatusCode::OK);
    }
    assert_eq!(value(&scrape(replicas[1].admin).await, "customs_limits_fallback_total", &[]), fallbacks);
    let reseeds: usize = replicas.iter().map(|r| records(r.dir.path(), "cluster_reseed").len()).sum();
    assert!(reseeds >= 1, "one replica gave the store its set back");
    let mut decided = std::collections::HashSet::new();
    for r in &mut replicas {
        stop(r);
        verify(r.dir.path());
        for rec in trail(&r.dir.path().join("audit")) {
            if let Some(id) = rec["request_id"].as_str() {
                decided.insert(id.to_owned());
            }
        }
    }
    assert!(answered.len() > 50, "{} requests under load", answered.len());
    let missing: Vec<_> = answered.iter().filter(|id| !decided.contains(*id)).collect();
    assert!(missing.is_empty(), "answered without a record: {missing:?}");
    upstream.stop().await;
}

#[test]
fn cluster_config_mistakes_are_named() {
    let dir = crate::support::example_copy();
    let gateway = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    let with = |cluster: &str| {
        std::fs::write(dir.path().join("gateway.toml"), format!("{gateway}\n[cluster]\n{cluster}")).unwrap();
        load_err(dir.path())
    };
    let e = with("url = \"redis://:hunter2@127.0.0.1:6379/\"");
    assert!(e.contains("cluster.url") && e.contains("holds credentials"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = with("url_env = \"CUSTOMS_NO_SUCH_VAR\"");
    assert!(e.contains("cluster.url_env") && e.contains("CUSTOMS_NO_SUCH_VAR is not set"), "{e}");
    let e = with("url = \"redis://127.0.0.1/\"\nfail_closed = [\"atlantis\"]");
    assert!(e.contains("cluster.fail_closed") && e.contains("atlantis"), "{e}");
    let e = with("url = \"redis://127.0.0.1/\"\nlease_fraction = 0");
    assert!(e.contains("cluster.lease_fraction") && e.contains("above 0"), "{e}");
    let e = with("url = \"http://127.0.0.1/\"");
    assert!(e.contains("cluster.url") && e.contains("not a redis://"), "{e}");
    let e = with("");
    assert!(e.contains("names no store"), "{e}");
}
