//! The inference listener's tower stack: the one place layers wrap [`Gateway`], outermost first.
//! The server and the in-process benchmark both build it here, so the benchmark runs the path the
//! server serves. Connection-level limits (header deadline, connection cap, drain) belong to the
//! accept loop in [`crate::server`], not to this stack.

use std::sync::Arc;

use tower::ServiceBuilder;

use crate::gateway::{Gateway, Shared};
use crate::request_id::{Generator, RequestId, RequestIdLayer};

pub type Stack = RequestId<Gateway>;

pub fn build(shared: Arc<Shared>, ids: Arc<Generator>) -> Stack {
    ServiceBuilder::new()
        // Outermost, so every response, refusals included, carries the id, and the id is on the
        // request before anything logs or forwards it.
        .layer(RequestIdLayer::new(ids))
        .service(Gateway::new(shared))
}
