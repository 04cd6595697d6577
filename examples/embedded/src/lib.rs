//! The application's own parts: state built with `.await`, a handler that
//! uses it, a tower layer of its own, and the routes of its HTTP server.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sfn_worker::{Task, TaskContext, TaskError};
use tower::{Layer, Service};

/// What the application shares between its HTTP routes and its handlers.
#[derive(Clone)]
pub struct AppState {
    pub prices: Arc<Prices>,
    pub stats: Arc<Stats>,
}

impl AppState {
    /// Built before the worker starts, with `.await`: here the price list is
    /// read from a file; in an application, a database pool or an SDK client.
    pub async fn load(prices: &Path) -> Result<Self, String> {
        let text = tokio::fs::read_to_string(prices)
            .await
            .map_err(|e| format!("{}: {e}", prices.display()))?;
        let cents = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: expected {{\"sku\": cents, ...}}: {e}",
                prices.display()
            )
        })?;
        Ok(Self {
            prices: Arc::new(Prices { cents }),
            stats: Arc::new(Stats::default()),
        })
    }
}

/// Unit prices in cents, by SKU.
pub struct Prices {
    cents: HashMap<String, u64>,
}

#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: String,
    pub lines: Vec<Line>,
    /// How long the (pretend) upstream takes to confirm the prices: the
    /// example's stand-in for a slow call, which stops when the task is
    /// cancelled.
    #[serde(default)]
    pub confirm_secs: u64,
}

#[derive(Debug, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Priced {
    pub id: String,
    pub total_cents: u64,
}

/// The handler: typed input, the task's context, and the application's state.
pub async fn price_order(
    order: Order,
    ctx: TaskContext,
    state: AppState,
) -> Result<Priced, TaskError> {
    if order.confirm_secs > 0 {
        tokio::select! {
            () = ctx.cancelled() => {
                return Err(TaskError::new("Orders.Cancelled", "cancelled while confirming prices"));
            }
            () = tokio::time::sleep(std::time::Duration::from_secs(order.confirm_secs)) => {}
        }
        ctx.heartbeat();
    }
    let mut total_cents = 0;
    for line in &order.lines {
        let Some(unit) = state.prices.cents.get(&line.sku) else {
            return Err(TaskError::new(
                "Orders.UnknownSku",
                format!("no price for {:?}", line.sku),
            ));
        };
        total_cents += unit * line.quantity;
    }
    Ok(Priced {
        id: order.id,
        total_cents,
    })
}

/// Tasks per binding and how they ended, as the application counts them.
#[derive(Debug, Default)]
pub struct Stats {
    by_binding: Mutex<BTreeMap<String, Counts>>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: u64,
    pub failed: u64,
}

impl Stats {
    fn record(&self, binding: &str, ok: bool) {
        let mut map = self
            .by_binding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let counts = map.entry(binding.to_owned()).or_default();
        if ok {
            counts.succeeded += 1;
        } else {
            counts.failed += 1;
        }
    }

    /// A copy of the counts, by binding name.
    pub fn snapshot(&self) -> BTreeMap<String, Counts> {
        self.by_binding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A tower layer written for the application: it counts every task by its
/// binding and outcome. It goes around every handler (`Registry::layer`), so
/// it sees the raw task and the handler's JSON answer.
#[derive(Clone)]
pub struct TaskStatsLayer(pub Arc<Stats>);

impl<S> Layer<S> for TaskStatsLayer {
    type Service = TaskStatsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TaskStatsService {
            inner,
            stats: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct TaskStatsService<S> {
    inner: S,
    stats: Arc<Stats>,
}

impl<S> Service<Task<String>> for TaskStatsService<S>
where
    S: Service<Task<String>, Response = String>,
    S::Error: Into<TaskError>,
    S::Future: Send + 'static,
{
    type Response = String;
    type Error = TaskError;
    type Future = Pin<Box<dyn Future<Output = Result<String, TaskError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TaskError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<String>) -> Self::Future {
        let binding = task.ctx.binding().to_owned();
        let stats = self.stats.clone();
        let answer = self.inner.call(task);
        Box::pin(async move {
            let answer = answer.await.map_err(Into::into);
            stats.record(&binding, answer.is_ok());
            answer
        })
    }
}

/// The application's routes: `/stats` of its own, and the worker's
/// `/metrics`, `/healthz` and `/readyz` merged in.
pub fn routes(state: AppState, worker: Router) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .with_state(state)
        .merge(worker)
}

async fn stats(State(state): State<AppState>) -> Json<BTreeMap<String, Counts>> {
    Json(state.stats.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AppState {
        AppState {
            prices: Arc::new(Prices {
                cents: HashMap::from([("apple".to_owned(), 50)]),
            }),
            stats: Arc::new(Stats::default()),
        }
    }

    #[tokio::test]
    async fn the_layer_counts_each_task_by_binding_and_outcome() {
        let state = state();
        let mut registry = sfn_worker::Registry::new();
        registry
            .handler_with_state("price-order", state.clone(), price_order)
            .layer(TaskStatsLayer(state.stats.clone()));
        let handler = registry
            .build("price-order", &serde_json::Value::Null)
            .unwrap();
        let ok = r#"{"id":"o1","lines":[{"sku":"apple","quantity":3}]}"#;
        let unknown = r#"{"id":"o2","lines":[{"sku":"kiwi","quantity":1}]}"#;
        let out = handler.call(ok.into(), TaskContext::local("orders")).await;
        assert_eq!(out.unwrap(), r#"{"id":"o1","total_cents":150}"#);
        let err = handler
            .call(unknown.into(), TaskContext::local("orders"))
            .await
            .unwrap_err();
        assert_eq!(err.error(), "Orders.UnknownSku");
        assert_eq!(
            state.stats.snapshot()["orders"],
            Counts {
                succeeded: 1,
                failed: 1
            }
        );
    }
}
