//! Assembles the request path, outermost layer first.

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
