//! An object over raw JSON bytes: a closure gets the params as they came and answers with the
//! result's bytes, nothing parsed (proxies, and large payloads the handler passes on).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::Error;
use crate::worker::CallContext;
use crate::worker::object::{BoxFuture, DynObject};

/// A closure `(method, params) -> future of result` over raw JSON bytes, served by
/// [`crate::Client::serve_raw`].
pub(crate) struct RawFn<F>(pub(crate) F);

impl<F, Fut> DynObject for RawFn<F>
where
    F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, Error>> + Send + 'static,
{
    fn describe(&self) -> Vec<u8> {
        Vec::new()
    }

    fn call_dyn(
        self: Arc<Self>,
        method: String,
        params: Bytes,
        _ctx: CallContext,
    ) -> BoxFuture<Result<Vec<u8>, Error>> {
        let answer = (self.0)(method, params);
        Box::pin(async move { Ok(Vec::from(answer.await?)) })
    }
}
