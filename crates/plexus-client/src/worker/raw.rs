//! Objects over raw JSON: a closure gets the params as they came, as [`Payload`]s that may be
//! memfds nobody has read, and answers with the result's, nothing parsed (proxies, and large
//! payloads the handler passes on). `Client::serve_raw` is this over bytes.

use std::future::Future;
use std::sync::Arc;

use crate::worker::CallContext;
use crate::worker::object::{BoxFuture, DynObject};
use crate::{Error, Payload};

/// A closure `(method, params) -> future of result` over [`Payload`]s, served by
/// [`crate::Client::serve_payload`].
pub(crate) struct PayloadFn<F>(pub(crate) F);

impl<F, Fut> DynObject for PayloadFn<F>
where
    F: Fn(String, Payload) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Payload, Error>> + Send + 'static,
{
    fn describe(&self) -> Vec<u8> {
        Vec::new()
    }

    fn call_dyn(
        self: Arc<Self>,
        method: String,
        params: Payload,
        _ctx: CallContext,
    ) -> BoxFuture<Result<Payload, Error>> {
        Box::pin((self.0)(method, params))
    }
}
