//! Response ownership. The Responses API stores what it creates upstream under an id the
//! upstream issues, and one upstream key serves every tenant; so the gateway binds each id to the
//! tenant whose request created it (read from the response as it passes: [`IdReader`]) and lets
//! only that tenant address it again. Bindings live in a bounded in-memory cache, and in cluster
//! mode on the store too, so that every replica knows them. An id the gateway does not know is
//! refused exactly like one bound to another tenant: fail closed, and nothing tells one from the
//! other.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::route::valid_response_id;

/// Who created a stored response, and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The tenant's id (stable across reloads, unlike its index).
    pub tenant: Box<str>,
    /// The model's id, which the policy decides every later request about the response on.
    pub model: Box<str>,
    /// The URL of the endpoint that stored it: the only one that can serve it again.
    pub endpoint: Box<str>,
}

/// Every binding this replica knows.
pub struct Owners {
    local: quick_cache::sync::Cache<Box<str>, Arc<Owner>>,
    cluster: Option<Arc<Cluster>>,
    /// How long the store keeps a binding: as long as the upstream keeps the response.
    ttl: Duration,
}

impl Owners {
    pub fn new(capacity: usize, cluster: Option<Arc<Cluster>>, ttl: Duration) -> Self {
        Self { local: quick_cache::sync::Cache::new(capacity.max(1)), cluster, ttl }
    }

    /// Binds `id` to `owner`, here at once and on the store in the background. A binding the
    /// store did not take is known to this replica only; the others refuse the id (fail closed).
    pub fn bind(&self, id: &str, owner: Arc<Owner>) {
        if !valid_response_id(id) {
            return;
        }
        self.local.insert(id.into(), owner.clone());
        if let Some(cluster) = &self.cluster {
            let Ok(json) = serde_json::to_string(&*owner) else { return };
            let (cluster, id, ttl) = (cluster.clone(), Box::<str>::from(id), self.ttl);
            tokio::spawn(async move {
                if let Err(e) = cluster.bind_response(&id, &json, ttl).await {
                    tracing::warn!(error = %e, "Could not bind a response id on the cluster store; other replicas will refuse it.");
                }
            });
        }
    }

    /// Forgets `id` once its response is deleted upstream, here and on the store.
    pub fn forget(&self, id: &str) {
        self.local.remove(id);
        if let Some(cluster) = &self.cluster {
            let (cluster, id) = (cluster.clone(), Box::<str>::from(id));
            tokio::spawn(async move {
                if let Err(e) = cluster.unbind_response(&id).await {
                    tracing::warn!(error = %e, "Could not unbind a deleted response's id on the cluster store.");
                }
            });
        }
    }

    /// Who owns `id`: this replica's binding, else the store's.
    pub async fn owner(&self, id: &str) -> Option<Arc<Owner>> {
        if let Some(o) = self.local.get(id) {
            return Some(o);
        }
        let cluster = self.cluster.as_ref()?;
        match cluster.response_owner(id).await.map(|j| j.map(|j| serde_json::from_str::<Owner>(&j))) {
            Ok(Some(Ok(owner))) => {
                let owner = Arc::new(owner);
                self.local.insert(id.into(), owner.clone());
                Some(owner)
            }
            Ok(None) => None,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "A response id's binding on the cluster store is unreadable; refusing it.");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not look up a response id on the cluster store; refusing it.");
                None
            }
        }
    }
}

/// The longest stretch of a stream searched for the response's id before giving up on it.
const MAX_SEARCH_BYTES: usize = 64 * 1024;
/// The most of a JSON body kept to find an `id` that does not lead it.
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

/// Reads the id of the response a Responses API create returns, so the id is bound before the
/// client has it: from the first frame when the top-level `id` leads a JSON body (where OpenAI
/// and Azure put it), else from the whole body before its last frame is passed on; or from the
/// `response.id` of a stream's first `response.*` event. An id not found is not bound, and its
/// owner is refused it later (fail closed).
pub struct IdReader {
    sse: bool,
    /// A stream's unfinished line, or the JSON body so far.
    line: Vec<u8>,
    searched: usize,
    done: bool,
}

/// A JSON body's top-level `id`, whatever its place.
#[derive(Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    response: Option<Created<'a>>,
}

#[derive(Deserialize)]
struct Created<'a> {
    id: &'a str,
}

impl IdReader {
    pub fn new(sse: bool) -> Self {
        Self { sse, line: Vec::new(), searched: 0, done: false }
    }

    /// The id, from the frame that completes it; `None` before and ever after.
    pub fn read(&mut self, data: &[u8]) -> Option<Box<str>> {
        if self.done {
            return None;
        }
        if !self.sse {
            if self.line.is_empty()
                && let Some(id) = leading_id(data)
            {
                self.done = true;
                return Some(id);
            }
            if self.line.len() + data.len() > MAX_JSON_BYTES {
                self.done = true;
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(data);
            }
            return None;
        }
        self.searched += data.len();
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let found = if self.line.is_empty() {
                event_id(&rest[..nl])
            } else {
                self.line.extend_from_slice(&rest[..nl]);
                let found = event_id(&self.line);
                self.line.clear();
                found
            };
            if found.is_some() {
                self.done = true;
                return found;
            }
            rest = &rest[nl + 1..];
        }
        self.line.extend_from_slice(rest);
        if self.searched > MAX_SEARCH_BYTES {
            self.done = true;
            self.line = Vec::new();
        }
        None
    }
}

impl IdReader {
    /// At the end of a JSON body: its top-level `id`, if no frame showed it leading.
    pub fn finish(&mut self) -> Option<Box<str>> {
        if self.done || self.sse {
            return None;
        }
        self.done = true;
        let body = std::mem::take(&mut self.line);
        let top: TopLevel<'_> = serde_json::from_slice(&body).ok()?;
        valid_response_id(&top.id).then(|| top.id.into())
    }
}

/// `{"id":"resp_…"` at the start of a JSON body.
fn leading_id(body: &[u8]) -> Option<Box<str>> {
    let rest = body.trim_ascii_start().strip_prefix(b"{")?.trim_ascii_start().strip_prefix(b"\"id\"")?;
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    let id = serde_json::Deserializer::from_slice(rest).into_iter::<&str>().next()?.ok()?;
    valid_response_id(id).then(|| id.into())
}

/// The response id in one SSE line, if it is the data of a `response.*` event.
fn event_id(line: &[u8]) -> Option<Box<str>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let data = line.strip_prefix(b"data:")?;
    let event: Event<'_> = serde_json::from_slice(data).ok()?;
    let id = event.response?.id;
    valid_response_id(id).then(|| id.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_a_json_body_is_its_leading_member() {
        let read = |body: &[u8]| IdReader::new(false).read(body);
        assert_eq!(read(br#"{"id":"resp_1","object":"response"}"#).as_deref(), Some("resp_1"));
        assert_eq!(read(b"{\n  \"id\" : \"resp_2\",\n").as_deref(), Some("resp_2"));
        assert_eq!(read(br#"{"id":"../x"}"#), None, "not a response id");
        // Elsewhere, it is read from the whole body, once the body is there.
        let body = br#"{"background":false,"output":[{"id":"msg_1"}],"id":"resp_3","object":"response"}"#;
        let mut r = IdReader::new(false);
        for part in body.chunks(10) {
            assert_eq!(r.read(part), None);
        }
        assert_eq!(r.finish().as_deref(), Some("resp_3"));
        assert_eq!(r.finish(), None, "once");
        let mut r = IdReader::new(false);
        assert_eq!(r.read(br#"{"id":"resp_1"}"#).as_deref(), Some("resp_1"));
        assert_eq!(r.finish(), None, "found already");
        let mut r = IdReader::new(false);
        r.read(br#"{"id":"../x","object":"response"}"#);
        assert_eq!(r.finish(), None);
    }

    #[test]
    fn id_of_a_stream_is_read_from_its_first_response_event_across_frames() {
        let stream = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_9\",\"status\":\"in_progress\"}}\n\nevent: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"response\":{\"id\":\"resp_other\"}}\n\n";
        for cut in [1, 7, 40, stream.len()] {
            let mut r = IdReader::new(true);
            let mut found = Vec::new();
            for chunk in stream.chunks(cut) {
                found.extend(r.read(chunk));
            }
            assert_eq!(found, vec![Box::<str>::from("resp_9")], "cut {cut}");
        }
        let mut r = IdReader::new(true);
        let noise = format!("data: {{\"x\":\"{}\"}}\n", "a".repeat(MAX_SEARCH_BYTES));
        assert_eq!(r.read(noise.as_bytes()), None);
        assert_eq!(r.read(b"data: {\"response\":{\"id\":\"resp_late\"}}\n"), None, "gave up");
    }

    #[tokio::test]
    async fn owners_are_kept_locally_and_bounded() {
        let owners = Owners::new(2, None, Duration::from_secs(60));
        let owner = |t: &str| Arc::new(Owner { tenant: t.into(), model: "m".into(), endpoint: "e".into() });
        owners.bind("resp_a", owner("t1"));
        assert_eq!(owners.owner("resp_a").await.map(|o| o.tenant.clone()).as_deref(), Some("t1"));
        assert!(owners.owner("resp_b").await.is_none());
        owners.forget("resp_a");
        assert!(owners.owner("resp_a").await.is_none());
        owners.bind("bad/id", owner("t1"));
        assert!(owners.owner("bad/id").await.is_none());
        for i in 0..100 {
            owners.bind(&format!("resp_{i}"), owner("t2"));
        }
        let kept = bound_count(&owners, 100).await;
        assert!(kept <= 2, "{kept} bindings kept past a capacity of 2");
    }

    async fn bound_count(owners: &Owners, n: usize) -> usize {
        let mut kept = 0;
        for i in 0..n {
            kept += usize::from(owners.owner(&format!("resp_{i}")).await.is_some());
        }
        kept
    }
}
