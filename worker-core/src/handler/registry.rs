use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Handler, TaskContext, TaskError, handler_fn};

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
pub struct KindInfo {
    /// The kind's name.
    pub kind: String,
    /// One line saying what it does.
    pub description: String,
    /// Its params, one per line; empty if it takes none.
    pub params_help: String,
}

type BuildFn = dyn Fn(&serde_json::Value) -> Result<Arc<dyn Handler>, ParamsError> + Send + Sync;

struct Entry {
    info: KindInfo,
    build: Box<BuildFn>,
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
            Some(entry) => (entry.build)(params),
            None => Err(ParamsError::UnknownKind {
                kind: kind.to_owned(),
                known: self.kinds.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
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
            },
        );
        self
    }
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
}
