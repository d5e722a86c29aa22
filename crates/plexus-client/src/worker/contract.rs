//! A worker's contract: JSON Schema 2020-12 schemas for its methods' params and results and
//! its topics' payloads, sent with its registration so the broker checks every call.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::worker::{CallContext, Object};
use crate::{Client, Error};

/// The contract of a served object, built method by method.
///
/// ```
/// use plexus_client::Contract;
/// use serde_json::json;
///
/// let contract = Contract::new()
///     .method(
///         "add",
///         json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}),
///         json!({"type": "integer"}),
///     )
///     .describe("add", "Adds two integers.")
///     .topic("math.done", json!({"type": "integer"}));
/// assert_eq!(contract.to_value()["methods"]["add"]["description"], "Adds two integers.");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Contract {
    methods: Map<String, Value>,
    topics: Map<String, Value>,
}

impl Contract {
    /// An empty contract.
    pub fn new() -> Contract {
        Contract::default()
    }

    /// Declares `method` with a schema for its params and one for its result; `Value::Null`
    /// for either declares none.
    pub fn method(mut self, method: &str, params: Value, result: Value) -> Contract {
        let entry = self.entry(method);
        for (key, schema) in [("params", params), ("result", result)] {
            if schema.is_null() {
                entry.remove(key);
            } else {
                entry.insert(key.to_owned(), schema);
            }
        }
        self
    }

    /// Declares `method` with schemas derived from its params type `P` and result type `R`.
    #[cfg(feature = "schemars")]
    pub fn method_for<P: schemars::JsonSchema, R: schemars::JsonSchema>(
        self,
        method: &str,
    ) -> Contract {
        let params = serde_json::to_value(schemars::schema_for!(P)).unwrap_or_default();
        let result = serde_json::to_value(schemars::schema_for!(R)).unwrap_or_default();
        self.method(method, params, result)
    }

    /// Gives `method` a one-line description, shown by `plexus introspect`.
    pub fn describe(mut self, method: &str, description: &str) -> Contract {
        self.entry(method)
            .insert("description".to_owned(), json!(description));
        self
    }

    /// Marks `method` deprecated.
    pub fn deprecated(mut self, method: &str) -> Contract {
        self.entry(method)
            .insert("deprecated".to_owned(), Value::Bool(true));
        self
    }

    /// Declares the schema of the payload of events on `topic` (an exact topic).
    pub fn topic(mut self, topic: &str, payload: Value) -> Contract {
        self.topics
            .insert(topic.to_owned(), json!({ "payload": payload }));
        self
    }

    /// The contract as the register description carries it.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("methods".to_owned(), Value::Object(self.methods.clone()));
        if !self.topics.is_empty() {
            out.insert("topics".to_owned(), Value::Object(self.topics.clone()));
        }
        Value::Object(out)
    }

    fn entry(&mut self, method: &str) -> &mut Map<String, Value> {
        let entry = self
            .methods
            .entry(method.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => map,
            _ => unreachable!("made an object just above"),
        }
    }
}

/// An object served under a contract.
struct Contracted<O> {
    object: O,
    contract: Value,
}

impl<O: Object> Object for Contracted<O> {
    fn call(
        &self,
        method: &str,
        params: &RawValue,
        ctx: &CallContext,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        self.object.call(method, params, ctx)
    }

    fn methods(&self) -> Vec<String> {
        self.object.methods()
    }

    fn description(&self) -> Option<Value> {
        Some(self.contract.clone())
    }
}

/// `Client::serve_with`: an object to serve and its contract, registered when awaited.
#[must_use = "nothing is served until it is awaited"]
pub struct Serve<'a, O> {
    client: &'a Client,
    name: String,
    object: O,
    contract: Contract,
    shared: bool,
}

impl<'a, O: Object> Serve<'a, O> {
    pub(crate) fn new(client: &'a Client, name: &str, object: O) -> Self {
        Serve {
            client,
            name: name.to_owned(),
            object,
            contract: Contract::new(),
            shared: false,
        }
    }

    /// Declares `method` with a params schema and a result schema (`Value::Null`: none).
    pub fn method(mut self, method: &str, params: Value, result: Value) -> Self {
        self.contract = self.contract.method(method, params, result);
        self
    }

    /// Declares `method` with schemas derived from its params type `P` and result type `R`.
    #[cfg(feature = "schemars")]
    pub fn method_for<P: schemars::JsonSchema, R: schemars::JsonSchema>(
        mut self,
        method: &str,
    ) -> Self {
        self.contract = self.contract.method_for::<P, R>(method);
        self
    }

    /// Gives `method` a one-line description.
    pub fn describe(mut self, method: &str, description: &str) -> Self {
        self.contract = self.contract.describe(method, description);
        self
    }

    /// Marks `method` deprecated.
    pub fn deprecated(mut self, method: &str) -> Self {
        self.contract = self.contract.deprecated(method);
        self
    }

    /// Declares the payload schema of events on `topic`.
    pub fn topic(mut self, topic: &str, payload: Value) -> Self {
        self.contract = self.contract.topic(topic, payload);
        self
    }

    /// Uses `contract` as it is built so far, replacing what was declared here.
    pub fn contract(mut self, contract: Contract) -> Self {
        self.contract = contract;
        self
    }

    /// Joins the name's queue group instead of owning it alone.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }
}

impl<'a, O: Object> IntoFuture for Serve<'a, O> {
    type Output = Result<(), Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let object = Contracted {
            object: self.object,
            contract: self.contract.to_value(),
        };
        Box::pin(async move {
            if self.shared {
                self.client.serve_shared(&self.name, object).await
            } else {
                self.client.serve(&self.name, object).await
            }
        })
    }
}
