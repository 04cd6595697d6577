//! Two handlers: plain async functions from typed input and a context to
//! `Result<Output, E>`, where `E` is your own error type that converts into a
//! `TaskError` (a stable error name and a cause). serde does the JSON; input
//! that does not match `Order` fails with `Worker.InvalidInput` before the
//! function runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sfn_worker::{Registry, TaskContext, TaskError};

#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Priced {
    pub id: String,
    pub total_cents: u64,
}

/// Our own error names: stable strings a state machine can `Catch`.
pub const EMPTY_ORDER: &str = "Orders.EmptyOrder";
pub const UNKNOWN_SKU: &str = "Orders.UnknownSku";
pub const CANCELLED: &str = "Images.Cancelled";

/// What can go wrong pricing an order, as the code sees it.
#[derive(Debug)]
pub enum OrderError {
    Empty { id: String },
    UnknownSku(String),
}

/// ... and as a state machine sees it: mapped to error names once, here,
/// so every `?` in the handler reports a name a `Catch` can match.
impl From<OrderError> for TaskError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Empty { id } => {
                TaskError::new(EMPTY_ORDER, format!("order {id} has no lines"))
            }
            OrderError::UnknownSku(sku) => {
                TaskError::new(UNKNOWN_SKU, format!("no price for {sku:?}"))
            }
        }
    }
}

fn unit_price_cents(sku: &str) -> Result<u64, OrderError> {
    match sku {
        "apple" => Ok(50),
        "pear" => Ok(75),
        _ => Err(OrderError::UnknownSku(sku.to_owned())),
    }
}

/// Our kinds, registered by `main` and by the tests alike.
pub fn register(registry: &mut Registry) {
    registry.handler("price-order", price_order);
    registry.handler("resize-images", resize_images);
    registry.describe(
        "price-order",
        "Prices an order; fails with Orders.EmptyOrder or Orders.UnknownSku.",
    );
    registry.describe(
        "resize-images",
        "Resizes a batch of images, heartbeating after each one.",
    );
}

pub async fn price_order(order: Order, _ctx: TaskContext) -> Result<Priced, OrderError> {
    if order.lines.is_empty() {
        return Err(OrderError::Empty { id: order.id });
    }
    let mut total_cents = 0;
    for line in &order.lines {
        total_cents += unit_price_cents(&line.sku)? * u64::from(line.quantity);
    }
    Ok(Priced {
        id: order.id,
        total_cents,
    })
}

#[derive(Debug, Deserialize)]
pub struct Batch {
    pub images: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Resized {
    pub done: Vec<String>,
}

/// Long work: heartbeat after each step, and stop promptly when the task is
/// cancelled (Step Functions closed it, the timeout hit, or shutdown).
pub async fn resize_images(batch: Batch, ctx: TaskContext) -> Result<Resized, TaskError> {
    let mut done = Vec::new();
    for image in batch.images {
        tokio::select! {
            _ = ctx.cancelled() => {
                return Err(TaskError::new(CANCELLED, format!("stopped after {} images", done.len())));
            }
            _ = tokio::time::sleep(Duration::from_secs(2)) => {} // the "resize"
        }
        done.push(format!("{image}@2x"));
        ctx.heartbeat(); // coalesced with the worker's heartbeat timer
    }
    Ok(Resized { done })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sfn_worker::testing::{TestTask, TestWorker};
    use sfn_worker::{CancelReason, Registry};

    fn order(lines: &[(&str, u32)]) -> Order {
        Order {
            id: "o-1".into(),
            lines: lines
                .iter()
                .map(|(s, q)| Line {
                    sku: (*s).into(),
                    quantity: *q,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn prices_an_order() {
        let priced = price_order(
            order(&[("apple", 2), ("pear", 1)]),
            TaskContext::local("test"),
        )
        .await;
        assert_eq!(
            priced.unwrap(),
            Priced {
                id: "o-1".into(),
                total_cents: 175
            }
        );
    }

    #[tokio::test]
    async fn fails_with_names_a_state_machine_can_catch() {
        let err: TaskError = price_order(order(&[]), TaskContext::local("test"))
            .await
            .unwrap_err()
            .into();
        assert_eq!(err.error(), EMPTY_ORDER);
        let err: TaskError = price_order(order(&[("kiwi", 1)]), TaskContext::local("test"))
            .await
            .unwrap_err()
            .into();
        assert_eq!(
            (err.error(), err.cause()),
            (UNKNOWN_SKU, "no price for \"kiwi\"")
        );
    }

    /// Through the registry, as the worker builds the handler: JSON in,
    /// JSON out, input checked against `Order` before the function runs.
    #[tokio::test]
    async fn the_worker_rejects_input_that_is_not_an_order() {
        let mut registry = Registry::new();
        register(&mut registry);
        let task = TestTask::new("orders");
        let err = task
            .run(&registry, "price-order", json!({ "id": 7 }))
            .await
            .unwrap_err();
        assert_eq!(err.error(), "Worker.InvalidInput");
        let out = task
            .run(
                &registry,
                "price-order",
                json!({ "id": "o-2", "lines": [{ "sku": "pear", "quantity": 4 }] }),
            )
            .await;
        assert_eq!(out, Ok(json!({ "id": "o-2", "total_cents": 300 })));
    }

    /// A heartbeat after each image; on tokio's paused clock the test does
    /// not wait the 2 s per image for real.
    #[tokio::test(start_paused = true)]
    async fn resizing_heartbeats_after_each_image() {
        let mut registry = Registry::new();
        register(&mut registry);
        let task = TestTask::new("images");
        let out = task
            .run(
                &registry,
                "resize-images",
                json!({ "images": ["a", "b", "c"] }),
            )
            .await;
        assert_eq!(out, Ok(json!({ "done": ["a@2x", "b@2x", "c@2x"] })));
        assert_eq!(task.heartbeats(), 3);
    }

    /// Cancelled as the worker cancels it (Step Functions closed the task,
    /// the timeout, shutdown): it stops at once and says how far it got.
    #[tokio::test(start_paused = true)]
    async fn resizing_stops_when_the_task_is_cancelled() {
        let mut registry = Registry::new();
        register(&mut registry);
        for reason in [
            CancelReason::TaskClosed,
            CancelReason::Timeout,
            CancelReason::Shutdown,
        ] {
            let task = TestTask::new("images");
            task.cancel_after(Duration::from_secs(5), reason);
            let images: Vec<String> = (0..10).map(|i| format!("img{i}.png")).collect();
            let started = tokio::time::Instant::now();
            let err = task
                .run(&registry, "resize-images", json!({ "images": images }))
                .await
                .unwrap_err();
            assert_eq!(
                (err.error(), err.cause()),
                (CANCELLED, "stopped after 2 images"),
                "{reason:?}"
            );
            assert_eq!(started.elapsed(), Duration::from_secs(5), "{reason:?}");
            assert_eq!(task.heartbeats(), 2, "{reason:?}");
        }
    }

    /// The handlers inside a real worker (pollers, heartbeats, reporting),
    /// against the in-process fake of Step Functions instead of AWS, on
    /// tokio's paused clock: what `cargo test` can prove without an emulator.
    #[tokio::test(start_paused = true)]
    async fn a_real_worker_serves_them_against_the_fake() {
        let mut registry = Registry::new();
        register(&mut registry);
        let worker = TestWorker::start(registry, "price-order").unwrap();
        worker.push(
            "ok",
            json!({ "id": "o-1", "lines": [{ "sku": "apple", "quantity": 3 }] }),
        );
        worker.push("bad", json!({ "id": "o-2", "lines": [] }));
        assert_eq!(
            worker.outcome("ok").await,
            Ok(json!({ "id": "o-1", "total_cents": 150 }))
        );
        assert_eq!(
            worker.outcome("bad").await.unwrap_err().error(),
            EMPTY_ORDER
        );
        worker.shutdown().await;
    }
}
