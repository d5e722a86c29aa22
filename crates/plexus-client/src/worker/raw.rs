//! Objects over raw JSON bytes: a closure gets the params as they came and answers with the
//! result's bytes, nothing parsed (proxies, and large payloads the handler passes on) — as bytes
//! ([`RawFn`]) or as [`Payload`]s that may be memfds nobody has read ([`PayloadFn`]).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::worker::CallContext;
use crate::worker::object::{BoxFuture, DynObject};
use crate::{Error, Payload};

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
        params: Payload,
        _ctx: CallContext,
    ) -> BoxFuture<Result<Payload, Error>> {
        let answer = params.to_bytes().map(|params| (self.0)(method, params));
        Box::pin(async move { Ok(Payload::from(answer?.await?)) })
    }
}

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
