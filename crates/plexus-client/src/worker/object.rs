//! What an object is: the [`Object`] trait, closures as objects, and the object-safe form the
//! socket task stores.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::worker::CallContext;
use crate::{Error, Payload};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

/// An object served on the bus. A call that finishes without waiting is answered at once; one
/// that awaits goes on in its own task, so a slow method never delays another (do long
/// blocking work in `spawn_blocking`). A panic answers `internal` and the object keeps serving.
///
/// ```
/// use plexus_client::{CallContext, Error, Object, parse_params};
/// use serde_json::{Value, json, value::RawValue};
///
/// struct Calculator;
///
/// #[derive(serde::Deserialize)]
/// struct Args { a: i64, b: i64 }
///
/// impl Object for Calculator {
///     async fn call(&self, method: &str, params: &RawValue, _ctx: &CallContext) -> Result<Value, Error> {
///         let Args { a, b } = parse_params(params)?;
///         match method {
///             "add" => Ok(json!({ "sum": a + b })),
///             "mul" => Ok(json!({ "product": a * b })),
///             other => Err(Error::no_such_method(other)),
///         }
///     }
/// }
/// ```
pub trait Object: Send + Sync + 'static {
    /// Answers one call. Return [`Error::remote`] (or helpers like [`Error::no_such_method`]) to
    /// answer with a specific error code; any other error answers `internal`.
    fn call(
        &self,
        method: &str,
        params: &RawValue,
        ctx: &CallContext,
    ) -> impl Future<Output = Result<Value, Error>> + Send;

    /// Methods declared when the object is registered, shown by `plexus introspect`.
    fn methods(&self) -> Vec<String> {
        Vec::new()
    }

    /// The whole register description, when the object declares more than method names: its
    /// contract (see [`crate::Contract`]). Methods from [`Object::methods`] it leaves out are
    /// added without schemas.
    fn description(&self) -> Option<Value> {
        None
    }
}

/// Parses a call's params, answering `invalid_params` when they do not fit `T`.
pub fn parse_params<T: DeserializeOwned>(params: &RawValue) -> Result<T, Error> {
    serde_json::from_str(params.get())
        .map_err(|e| Error::invalid_params(format!("bad params: {e}")))
}

/// A closure served as an object: `(method, params, ctx) -> future of result`.
pub struct FnObject<F>(pub F);

impl<F, Fut> Object for FnObject<F>
where
    F: Fn(String, Value, CallContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Error>> + Send + 'static,
{
    fn call(
        &self,
        method: &str,
        params: &RawValue,
        ctx: &CallContext,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let parsed: Result<Value, Error> = parse_params(params);
        let fut = parsed.map(|params| (self.0)(method.to_owned(), params, ctx.clone()));
        async move { fut?.await }
    }
}

/// A boxed future, for the object-safe form of [`Object`].
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The object-safe form the socket task stores: owned arguments, params and result as they
/// travel ([`Payload`]: JSON bytes, or a memfd not yet read).
pub(crate) trait DynObject: Send + Sync {
    /// The `register` payload: the methods the object declares, or nothing.
    fn describe(&self) -> Vec<u8>;
    /// Answers one call.
    fn call_dyn(
        self: Arc<Self>,
        method: String,
        params: Payload,
        ctx: CallContext,
    ) -> BoxFuture<Result<Payload, Error>>;
}

impl<O: Object> DynObject for O {
    fn describe(&self) -> Vec<u8> {
        let methods = self.methods();
        let mut description = match self.description() {
            Some(description) => description,
            None if methods.is_empty() => return Vec::new(),
            None => serde_json::json!({ "methods": {} }),
        };
        if let Some(declared) = description
            .as_object_mut()
            .map(|d| d.entry("methods").or_insert_with(|| serde_json::json!({})))
            .and_then(Value::as_object_mut)
        {
            for m in methods {
                declared
                    .entry(m)
                    .or_insert_with(|| Value::Object(Default::default()));
            }
        }
        description.to_string().into_bytes()
    }

    fn call_dyn(
        self: Arc<Self>,
        method: String,
        params: Payload,
        ctx: CallContext,
    ) -> BoxFuture<Result<Payload, Error>> {
        Box::pin(async move {
            let params = params.to_bytes()?;
            let text: &[u8] = if params.is_empty() { b"null" } else { &params };
            let raw: Box<RawValue> = serde_json::from_slice(text)
                .map_err(|e| Error::invalid_params(format!("params are not JSON: {e}")))?;
            let value = self.call(&method, &raw, &ctx).await?;
            Ok(Payload::from(serde_json::to_vec(&value)?))
        })
    }
}
