use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use tower::{Layer, Service};

use super::service::RawServiceHandler;
use super::{Handler, HandlerService, ServiceHandler, Task, TaskContext, TaskError, handler_fn};

/// A handler *kind* that builds handlers from a binding's `params` table.
///
/// Built-in handlers such as `exec` are kinds: each `[[activity]]` that names
/// the kind gets its own handler, configured by its `[activity.params]`.
pub trait HandlerFactory: Send + Sync + 'static {
    /// The binding's `params`, deserialized. Use `#[serde(deny_unknown_fields)]`
    /// so typos are reported at load time.
    type Params: DeserializeOwned;

    /// The kind's name, as written in `handler = "..."`.
    fn kind(&self) -> &str;
    /// One line saying what the kind does (`sfn-worker handlers`).
    fn description(&self) -> &str;
    /// The kind's params, one per line as `name: type (default) - meaning`.
    fn params_help(&self) -> &str {
        ""
    }
    /// Build a handler from validated params. An `Err` is reported as a
    /// configuration error naming the param (`activity[0].params.command`).
    fn build(&self, params: Self::Params) -> Result<Arc<dyn Handler>, BuildError>;
}

/// Why a [`HandlerFactory`] refused a binding's params: which param, and
/// what was expected.
///
/// ```
/// use sfn_worker_core::BuildError;
/// let e = BuildError::new("command", "expected a non-empty list");
/// assert_eq!(e.to_string(), "command: expected a non-empty list");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
#[non_exhaustive]
pub struct BuildError {
    /// The param's path inside `params` (`command`, `headers.Authorization`).
    pub param: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl BuildError {
    /// `param` is wrong: `message` says how, and what was expected.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// Why a binding's params could not become a handler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// No kind of that name is registered.
    #[error("unknown handler kind `{kind}`; registered kinds: {known}")]
    UnknownKind {
        /// The name asked for.
        kind: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The params do not deserialize into the kind's params type.
    #[error("{path}: {message}")]
    Invalid {
        /// The path inside `params` (`.` for the table itself).
        path: String,
        /// What was wrong, and what was expected.
        message: String,
    },
    /// The kind's factory rejected the params.
    #[error("{0}")]
    Rejected(BuildError),
}

/// A description of a registered kind, for listings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KindInfo {
    /// The kind's name.
    pub kind: String,
    /// One line saying what it does.
    pub description: String,
    /// Its params, one per line; empty if it takes none.
    pub params_help: String,
}

type BuildFn = dyn Fn(&serde_json::Value) -> Result<Arc<dyn Handler>, ParamsError> + Send + Sync;
/// A layer, erased: wraps a built handler in it.
type WrapFn = dyn Fn(Arc<dyn Handler>) -> Arc<dyn Handler> + Send + Sync;

struct Entry {
    info: KindInfo,
    build: Box<BuildFn>,
    /// Layers around this kind only, innermost first.
    layers: Vec<Arc<WrapFn>>,
}

/// The handler kinds a worker knows, by name.
///
/// ```
/// use sfn_worker_core::{Registry, TaskContext, TaskError};
/// let mut registry = Registry::new();
/// registry.handler("upper", |s: String, _ctx: TaskContext| async move {
///     Ok::<_, TaskError>(s.to_uppercase())
/// });
/// assert!(registry.kinds().any(|k| k.kind == "upper"));
/// ```
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<String, Entry>,
    /// Layers around every kind, innermost first.
    layers: Vec<Arc<WrapFn>>,
}

/// A handler registered with [`Registry::handler`] takes no params.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register an async function as a kind that takes no params. A later
    /// registration under the same name replaces the earlier one.
    pub fn handler<F, I, O, E, Fut>(&mut self, kind: &str, f: F) -> &mut Self
    where
        F: Fn(I, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        self.handler_object(kind, Arc::new(handler_fn(f)))
    }

    /// Register an async function that also gets `state`, a value shared by
    /// every task of the kind (a database pool, an SDK client, your app's
    /// state): each task gets a clone. Build the state with `.await` before
    /// registering it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sfn_worker_core::{Registry, TaskContext, TaskError};
    ///
    /// struct Prices { apple: u32 }
    ///
    /// async fn price(sku: String, _ctx: TaskContext, prices: Arc<Prices>) -> Result<u32, TaskError> {
    ///     match sku.as_str() {
    ///         "apple" => Ok(prices.apple),
    ///         _ => Err(TaskError::new("Prices.UnknownSku", sku)),
    ///     }
    /// }
    ///
    /// let mut registry = Registry::new();
    /// registry.handler_with_state("price", Arc::new(Prices { apple: 30 }), price);
    /// ```
    pub fn handler_with_state<S, F, I, O, E, Fut>(
        &mut self,
        kind: &str,
        state: S,
        f: F,
    ) -> &mut Self
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(I, TaskContext, S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        self.handler(kind, move |input: I, ctx| f(input, ctx, state.clone()))
    }

    /// Register a tower service as a kind that takes no params: any
    /// `Service<Task<I>>` whose response serializes to JSON and whose error
    /// becomes a [`TaskError`] (`tower::BoxError` does: see its `From`).
    /// Compose a kind's own layers with `tower::ServiceBuilder`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sfn_worker_core::{Registry, Task, TaskError};
    ///
    /// let svc = tower::ServiceBuilder::new()
    ///     .timeout(Duration::from_secs(30))
    ///     .service_fn(|task: Task<u32>| async move { Ok::<_, TaskError>(task.input * 2) });
    /// let mut registry = Registry::new();
    /// registry.service("double", svc);
    /// ```
    pub fn service<S, I>(&mut self, kind: &str, svc: S) -> &mut Self
    where
        S: Service<Task<I>> + Clone + Send + 'static,
        S::Response: Serialize + Send + 'static,
        S::Error: Into<TaskError>,
        S::Future: Send + 'static,
        I: DeserializeOwned + Send + 'static,
    {
        self.handler_object(kind, Arc::new(ServiceHandler::new(svc)))
    }

    /// Put a tower layer around every handler this registry builds,
    /// built-in kinds included. The layer sees [`Task<String>`] (the raw
    /// JSON input) and answers JSON text. The first layer added is the
    /// outermost, as in `tower::ServiceBuilder`. The worker's task span,
    /// heartbeats and `timeout_secs` stay outside every layer.
    ///
    /// The layer's `layer()` runs once per binding (each binding's handler
    /// is built on its own): state it creates there is per binding (tower's
    /// `ConcurrencyLimitLayer` limits each binding), state it holds is
    /// shared (`GlobalConcurrencyLimitLayer` limits them all).
    ///
    /// A task waiting in a layer's `poll_ready` (a concurrency or rate
    /// limit) holds its worker slot and is kept alive (heartbeats, message
    /// visibility) while it waits, and its `timeout_secs` runs: limit with
    /// the bindings' `concurrency` and `worker.max_concurrency` first, which
    /// do not take tasks the worker cannot start. A layer that spawns the
    /// inner call or retries it leaves the worker's control: the worker
    /// aborts what it awaits, and a retry runs the handler again.
    ///
    /// ```
    /// use sfn_worker_core::Registry;
    ///
    /// let mut registry = Registry::new();
    /// // At most 16 tasks in the handlers at once, across every binding.
    /// registry.layer(tower::limit::GlobalConcurrencyLimitLayer::new(16));
    /// ```
    pub fn layer<L>(&mut self, layer: L) -> &mut Self
    where
        L: Layer<HandlerService> + Send + Sync + 'static,
        L::Service: Service<Task<String>, Response = String> + Clone + Send + 'static,
        <L::Service as Service<Task<String>>>::Error: Into<TaskError>,
        <L::Service as Service<Task<String>>>::Future: Send + 'static,
    {
        self.layers.insert(0, wrap(layer));
        self
    }

    /// Put a tower layer around the handlers of one kind, inside the layers
    /// given to [`Registry::layer`]. The kind must be registered first, and
    /// registering it again later replaces it without its layers.
    pub fn layer_for<L>(&mut self, kind: &str, layer: L) -> Result<&mut Self, ParamsError>
    where
        L: Layer<HandlerService> + Send + Sync + 'static,
        L::Service: Service<Task<String>, Response = String> + Clone + Send + 'static,
        <L::Service as Service<Task<String>>>::Error: Into<TaskError>,
        <L::Service as Service<Task<String>>>::Future: Send + 'static,
    {
        let known = self.known();
        match self.kinds.get_mut(kind) {
            Some(entry) => {
                entry.layers.insert(0, wrap(layer));
                Ok(self)
            }
            None => Err(ParamsError::UnknownKind {
                kind: kind.to_owned(),
                known,
            }),
        }
    }

    /// Register a [`Handler`] object (no params) under a name.
    pub fn handler_object(&mut self, kind: &str, handler: Arc<dyn Handler>) -> &mut Self {
        let info = KindInfo {
            kind: kind.to_owned(),
            description: String::new(),
            params_help: String::new(),
        };
        self.insert(info, move |params| {
            decode::<NoParams>(params)?;
            Ok(handler.clone())
        })
    }

    /// Register a kind that builds its handlers from params.
    pub fn factory<K: HandlerFactory>(&mut self, factory: K) -> &mut Self {
        let info = KindInfo {
            kind: factory.kind().to_owned(),
            description: factory.description().to_owned(),
            params_help: factory.params_help().to_owned(),
        };
        self.insert(info, move |params| {
            let typed = decode::<K::Params>(params)?;
            factory.build(typed).map_err(ParamsError::Rejected)
        })
    }

    /// Give a kind registered with [`Registry::handler`] a description.
    pub fn describe(&mut self, kind: &str, description: &str) -> &mut Self {
        if let Some(entry) = self.kinds.get_mut(kind) {
            entry.info.description = description.to_owned();
        }
        self
    }

    /// Build a handler of `kind` from a binding's params (`{}` when absent).
    pub fn build(
        &self,
        kind: &str,
        params: &serde_json::Value,
    ) -> Result<Arc<dyn Handler>, ParamsError> {
        match self.kinds.get(kind) {
            Some(entry) => {
                let mut handler = (entry.build)(params)?;
                for wrap in entry.layers.iter().chain(&self.layers) {
                    handler = wrap(handler);
                }
                Ok(handler)
            }
            None => Err(ParamsError::UnknownKind {
                kind: kind.to_owned(),
                known: self.known(),
            }),
        }
    }

    fn known(&self) -> String {
        self.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The registered kinds, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &KindInfo> {
        self.kinds.values().map(|e| &e.info)
    }

    fn insert(
        &mut self,
        info: KindInfo,
        build: impl Fn(&serde_json::Value) -> Result<Arc<dyn Handler>, ParamsError>
        + Send
        + Sync
        + 'static,
    ) -> &mut Self {
        self.kinds.insert(
            info.kind.clone(),
            Entry {
                info,
                build: Box::new(build),
                layers: Vec::new(),
            },
        );
        self
    }
}

fn wrap<L>(layer: L) -> Arc<WrapFn>
where
    L: Layer<HandlerService> + Send + Sync + 'static,
    L::Service: Service<Task<String>, Response = String> + Clone + Send + 'static,
    <L::Service as Service<Task<String>>>::Error: Into<TaskError>,
    <L::Service as Service<Task<String>>>::Future: Send + 'static,
{
    Arc::new(move |inner: Arc<dyn Handler>| -> Arc<dyn Handler> {
        Arc::new(RawServiceHandler::new(
            layer.layer(HandlerService::new(inner)),
        ))
    })
}

fn decode<P: DeserializeOwned>(params: &serde_json::Value) -> Result<P, ParamsError> {
    let empty = serde_json::Value::Object(Default::default());
    let params = if params.is_null() { &empty } else { params };
    serde_path_to_error::deserialize(params).map_err(|e| ParamsError::Invalid {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    struct Greeter;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct GreeterParams {
        greeting: String,
    }
    impl HandlerFactory for Greeter {
        type Params = GreeterParams;
        fn kind(&self) -> &str {
            "greet"
        }
        fn description(&self) -> &str {
            "greets"
        }
        fn build(&self, p: GreeterParams) -> Result<Arc<dyn Handler>, BuildError> {
            if p.greeting.is_empty() {
                return Err(BuildError::new("greeting", "must not be empty"));
            }
            let g = p.greeting;
            Ok(Arc::new(handler_fn(move |name: String, _ctx| {
                let g = g.clone();
                async move { Ok::<_, TaskError>(format!("{g}, {name}")) }
            })))
        }
    }

    #[tokio::test]
    async fn factory_builds_from_params() {
        let mut r = Registry::new();
        r.factory(Greeter);
        let h = r
            .build("greet", &serde_json::json!({"greeting": "hi"}))
            .unwrap();
        let out = h
            .call(r#""bob""#.into(), TaskContext::local("t"))
            .await
            .unwrap();
        assert_eq!(out, r#""hi, bob""#);
    }

    #[test]
    fn bad_params_name_the_field() {
        let mut r = Registry::new();
        r.factory(Greeter);
        let err = r
            .build("greet", &serde_json::json!({"greting": "hi"}))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown field `greting`"), "{err}");
        let err = r
            .build("greet", &serde_json::json!({"greeting": 3}))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("greeting:"), "{err}");
        let err = r
            .build("greet", &serde_json::json!({"greeting": ""}))
            .err()
            .unwrap();
        assert!(
            matches!(&err, ParamsError::Rejected(e) if e.param == "greeting" && e.message == "must not be empty"),
            "{err}"
        );
    }

    #[test]
    fn unknown_kind_lists_known_ones() {
        let mut r = Registry::new();
        r.handler("a", |v: serde_json::Value, _ctx| async move {
            Ok::<_, TaskError>(v)
        });
        let err = r
            .build("b", &serde_json::Value::Null)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(err, "unknown handler kind `b`; registered kinds: a");
    }

    #[test]
    fn plain_handlers_reject_params() {
        let mut r = Registry::new();
        r.handler("a", |v: serde_json::Value, _ctx| async move {
            Ok::<_, TaskError>(v)
        });
        assert!(r.build("a", &serde_json::json!({})).is_ok());
        assert!(r.build("a", &serde_json::json!({"x": 1})).is_err());
    }

    /// A layer that appends its name to the JSON string a handler returns.
    #[derive(Clone)]
    struct Tag(&'static str);
    impl Layer<HandlerService> for Tag {
        type Service = tower::util::BoxCloneService<Task<String>, String, TaskError>;
        fn layer(&self, inner: HandlerService) -> Self::Service {
            use tower::ServiceExt;
            let tag = self.0;
            tower::util::BoxCloneService::new(
                inner.map_response(move |out: String| {
                    format!("{}+{tag}\"", out.trim_end_matches('"'))
                }),
            )
        }
    }

    #[tokio::test]
    async fn layers_wrap_every_kind_first_added_outermost_and_per_kind_inside() {
        let mut r = Registry::new();
        r.handler("a", |_: serde_json::Value, _ctx| async {
            Ok::<_, TaskError>("a")
        });
        r.handler("b", |_: serde_json::Value, _ctx| async {
            Ok::<_, TaskError>("b")
        });
        r.layer(Tag("outer")).layer(Tag("inner"));
        r.layer_for("a", Tag("only-a")).unwrap();
        let run = |kind: &'static str| {
            let h = r.build(kind, &serde_json::Value::Null).unwrap();
            async move { h.call("{}".into(), TaskContext::local("t")).await.unwrap() }
        };
        assert_eq!(run("a").await, r#""a+only-a+inner+outer""#);
        assert_eq!(run("b").await, r#""b+inner+outer""#);
        assert!(matches!(
            r.layer_for("c", Tag("x")),
            Err(ParamsError::UnknownKind { .. })
        ));
    }

    #[tokio::test]
    async fn state_is_shared_by_every_task_of_a_kind() {
        let counter = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut r = Registry::new();
        r.handler_with_state(
            "count",
            counter.clone(),
            |_: serde_json::Value, _ctx, n: Arc<std::sync::atomic::AtomicU32>| async move {
                Ok::<_, TaskError>(n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
            },
        );
        let h = r.build("count", &serde_json::Value::Null).unwrap();
        h.call("{}".into(), TaskContext::local("t")).await.unwrap();
        let out = h.call("{}".into(), TaskContext::local("t")).await.unwrap();
        assert_eq!(out, "2");
        assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
