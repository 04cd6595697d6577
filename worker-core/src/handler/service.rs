//! Handlers as tower services, and tower layers around handlers.
//!
//! Any `tower::Service<Task<I>>` whose response serializes to JSON and whose
//! error becomes a [`TaskError`] is a handler ([`Registry::service`]). Layers
//! go around every handler of a registry ([`Registry::layer`]) or around one
//! kind ([`Registry::layer_for`]); they see the task as [`Task<String>`]
//! (the raw JSON input) and answer JSON text, so one layer fits handlers of
//! every input type.
//!
//! The worker's own behaviour stays outside every user layer: the task's
//! span is current inside them, its heartbeats and the binding's
//! `timeout_secs` run whatever a layer does, and a layer's failure is
//! redacted and reported like a handler's.
//!
//! [`Registry::service`]: super::Registry::service
//! [`Registry::layer`]: super::Registry::layer
//! [`Registry::layer_for`]: super::Registry::layer_for

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::{Service, ServiceExt};

use super::{Handler, HandlerFuture, TaskContext, TaskError, parse_input, serialize_output};

/// What a tower-service handler is called with: the task's input and its
/// context.
///
/// `I` is the handler's input type; layers around every handler see the
/// raw JSON text (`Task<String>`, the default).
///
/// ```
/// use sfn_worker_core::{Task, TaskContext};
/// let task = Task::new(21_u32, TaskContext::local("test"));
/// let Task { input, ctx, .. } = task;
/// assert_eq!((input, ctx.binding()), (21, "test"));
/// ```
///
/// **The input may hold the task token.** With a queue binding's default
/// `input_pointer` the input is the whole message body, token included: a
/// layer that logs `task.input` logs the token. Log `task.ctx` (its
/// `Debug` shows the token's fingerprint only) or the input's length;
/// `Task`'s own `Debug` does the same.
#[derive(Clone)]
#[non_exhaustive]
pub struct Task<I = String> {
    /// The task's input: typed for a handler, JSON text for a layer around
    /// every handler.
    pub input: I,
    /// The task's context: cancellation, deadline, heartbeats, where it came from.
    pub ctx: TaskContext,
}

impl<I> std::fmt::Debug for Task<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the input: it may be a message body with the token in it.
        f.debug_struct("Task")
            .field("input", &format_args!("<{}>", std::any::type_name::<I>()))
            .field("ctx", &self.ctx)
            .finish()
    }
}

impl<I> Task<I> {
    /// A task with this input and context (tests, layers that rewrite input).
    pub fn new(input: I, ctx: TaskContext) -> Self {
        Self { input, ctx }
    }
}

/// A handler as a tower service over raw tasks: what a layer passed to
/// [`Registry::layer`](super::Registry::layer) wraps. Cheap to clone.
#[derive(Clone)]
pub struct HandlerService(Arc<dyn Handler>);

impl HandlerService {
    pub(crate) fn new(handler: Arc<dyn Handler>) -> Self {
        Self(handler)
    }
}

/// A built handler as a service, to call it through tower (tests, layers
/// written by hand).
impl From<Arc<dyn Handler>> for HandlerService {
    fn from(handler: Arc<dyn Handler>) -> Self {
        Self(handler)
    }
}

impl std::fmt::Debug for HandlerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandlerService")
    }
}

impl Service<Task<String>> for HandlerService {
    type Response = String;
    type Error = TaskError;
    type Future = HandlerFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TaskError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<String>) -> HandlerFuture {
        self.0.call(task.input, task.ctx)
    }
}

/// A [`Handler`] made from a tower service over typed tasks
/// ([`Registry::service`](super::Registry::service)).
///
/// Each task gets a clone of the service, readied and called once
/// (`ServiceExt::oneshot`), so services that share state between clones (a
/// concurrency limit, a rate limit) apply it across tasks.
pub struct ServiceHandler<S, I> {
    svc: Clones<S>,
    _input: PhantomData<fn(I)>,
}

impl<S, I> ServiceHandler<S, I> {
    pub(crate) fn new(svc: S) -> Self {
        Self {
            svc: Clones(Mutex::new(svc)),
            _input: PhantomData,
        }
    }
}

/// A service each task gets a clone of. The Mutex only makes any `Send`
/// service `Sync`: it is held for the clone, never across an await.
struct Clones<S>(Mutex<S>);

impl<S: Clone> Clones<S> {
    fn get(&self) -> S {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S, I> Handler for ServiceHandler<S, I>
where
    S: Service<Task<I>> + Clone + Send + 'static,
    S::Response: Serialize + Send + 'static,
    S::Error: Into<TaskError>,
    S::Future: Send + 'static,
    I: DeserializeOwned + Send + 'static,
{
    fn call(&self, input: String, ctx: TaskContext) -> HandlerFuture {
        let typed = match parse_input::<I>(&input) {
            Ok(typed) => typed,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let svc = self.svc.get();
        Box::pin(async move {
            let output = svc
                .oneshot(Task::new(typed, ctx))
                .await
                .map_err(Into::into)?;
            serialize_output(&output)
        })
    }
}

/// A [`Handler`] made from a layered [`HandlerService`]: raw JSON in and out.
pub(crate) struct RawServiceHandler<S>(Clones<S>);

impl<S> RawServiceHandler<S> {
    pub(crate) fn new(svc: S) -> Self {
        Self(Clones(Mutex::new(svc)))
    }
}

impl<S> Handler for RawServiceHandler<S>
where
    S: Service<Task<String>, Response = String> + Clone + Send + 'static,
    S::Error: Into<TaskError>,
    S::Future: Send + 'static,
{
    fn call(&self, input: String, ctx: TaskContext) -> HandlerFuture {
        let svc = self.0.get();
        Box::pin(async move {
            let output = svc
                .oneshot(Task::new(input, ctx))
                .await
                .map_err(Into::into)?;
            // A layer answers JSON text; one that does not fails the task
            // here, as a handler's unserializable output does, rather than
            // at Step Functions.
            match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
                Ok(_) => Ok(output),
                Err(e) => Err(TaskError::new(
                    crate::error_names::INVALID_OUTPUT,
                    format!("a layer's output is not JSON: {e}"),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_tower_service_is_a_handler() {
        let svc =
            tower::service_fn(|task: Task<u32>| async move { Ok::<_, TaskError>(task.input * 2) });
        let h = ServiceHandler::new(svc);
        let out = Handler::call(&h, "21".into(), TaskContext::local("t")).await;
        assert_eq!(out.unwrap(), "42");
        let err = Handler::call(&h, "\"x\"".into(), TaskContext::local("t"))
            .await
            .unwrap_err();
        assert_eq!(err.error(), crate::error_names::INVALID_INPUT);
    }

    #[tokio::test(start_paused = true)]
    async fn towers_timeout_fails_the_task_as_a_handler_timeout() {
        let svc = tower::ServiceBuilder::new()
            .timeout(Duration::from_secs(1))
            .service_fn(|_: Task<serde_json::Value>| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, TaskError>(())
            });
        let h = ServiceHandler::new(svc);
        let err = Handler::call(&h, "{}".into(), TaskContext::local("t"))
            .await
            .unwrap_err();
        assert_eq!(err.error(), crate::error_names::HANDLER_TIMEOUT);
    }

    #[tokio::test]
    async fn a_concurrency_limit_is_shared_by_every_task() {
        let peak = Peak::default();
        let p = peak.clone();
        let svc = tower::ServiceBuilder::new()
            .concurrency_limit(2)
            .service_fn(move |_: Task<serde_json::Value>| {
                let p = p.clone();
                async move {
                    p.work().await;
                    Ok::<_, TaskError>(())
                }
            });
        let h: Arc<dyn Handler> = Arc::new(ServiceHandler::new(svc));
        let calls = (0..6).map(|_| h.call("{}".into(), TaskContext::local("t")));
        for out in futures::future::join_all(calls).await {
            out.unwrap();
        }
        assert_eq!(peak.most(), 2);
    }

    /// How many calls were inside at once, at most.
    #[derive(Clone, Default)]
    struct Peak {
        running: Arc<std::sync::atomic::AtomicUsize>,
        most: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Peak {
        async fn work(&self) {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.running.fetch_sub(1, SeqCst);
        }

        fn most(&self) -> usize {
            self.most.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// `Registry::layer` runs the layer's `layer()` once per binding: a
    /// limit made there (`ConcurrencyLimitLayer`) is per binding, a limit
    /// the layer holds (`GlobalConcurrencyLimitLayer`) is shared by all.
    #[tokio::test]
    async fn a_global_limit_layer_is_shared_by_every_binding() {
        let peak = Peak::default();
        let p = peak.clone();
        let mut registry = crate::Registry::new();
        registry.handler("h", move |_: serde_json::Value, _ctx| {
            let p = p.clone();
            async move {
                p.work().await;
                Ok::<_, TaskError>(())
            }
        });
        registry.layer(tower::limit::GlobalConcurrencyLimitLayer::new(2));
        // Two bindings of the kind: two handlers built.
        let a = registry.build("h", &serde_json::Value::Null).unwrap();
        let b = registry.build("h", &serde_json::Value::Null).unwrap();
        let calls = (0..6).map(|i| {
            let h = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move { h.call("{}".into(), TaskContext::local("t")).await }
        });
        for out in futures::future::join_all(calls).await {
            out.unwrap();
        }
        assert_eq!(peak.most(), 2);
    }

    #[tokio::test]
    async fn a_layer_whose_output_is_not_json_fails_the_task() {
        let mut registry = crate::Registry::new();
        registry.handler("h", |_: serde_json::Value, _ctx| async {
            Ok::<_, TaskError>(1)
        });
        registry.layer(tower::layer::layer_fn(|inner: HandlerService| {
            inner.map_response(|out: String| format!("{out} and more"))
        }));
        let h = registry.build("h", &serde_json::Value::Null).unwrap();
        let err = h
            .call("{}".into(), TaskContext::local("t"))
            .await
            .unwrap_err();
        assert_eq!(err.error(), crate::error_names::INVALID_OUTPUT);
    }

    #[test]
    fn a_tasks_debug_never_shows_its_input() {
        let task = Task::new(
            "{\"taskToken\":\"SECRET\"}".to_owned(),
            TaskContext::local("t"),
        );
        let shown = format!("{task:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("alloc::string::String"), "{shown}");
    }
}
