//! Batching visibility changes and deletes across messages.
//!
//! Every running message needs its visibility extended on a timer and a
//! delete at the end; one call per message would cost as many requests as
//! tasks. Requests go to one task per queue, which sends whatever has queued
//! up as `ChangeMessageVisibilityBatch` / `DeleteMessageBatch` calls of up to
//! 10 entries. Under load calls fill up by themselves; otherwise the first
//! request of a round waits up to [`LINGER`] for others to join it (fewer
//! calls: SQS bills per call, and each costs the worker as much as one
//! task's whole report). Batch calls answer per entry even on HTTP 200, so each
//! requester gets its own entry's result. Each request is tried once: the
//! requester (the message's lease) knows whether and when to try again.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::aws::{ApiError, ApiErrorKind, BatchEntry, Operation, SqsApi};
use crate::events::{BatchCallFailed, InternalEvent};
use crate::limits::MAX_BATCH_ENTRIES;

#[derive(Debug)]
struct Request {
    delete: bool,
    receipt_handle: String,
    visibility_secs: i32,
    reply: oneshot::Sender<Result<(), ApiError>>,
}

/// The handle requests go through. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Request>,
}

impl Batcher {
    /// Start the batching task for one queue; it ends when every handle is dropped.
    pub fn spawn(api: Arc<dyn SqsApi>, queue_url: Arc<str>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, api, queue_url));
        Self { tx }
    }

    /// Set a message's visibility timeout (0 releases it).
    pub async fn change_visibility(
        &self,
        receipt_handle: String,
        secs: i32,
    ) -> Result<(), ApiError> {
        self.request(false, receipt_handle, secs).await
    }

    /// Delete a message.
    pub async fn delete(&self, receipt_handle: String) -> Result<(), ApiError> {
        self.request(true, receipt_handle, 0).await
    }

    async fn request(
        &self,
        delete: bool,
        receipt_handle: String,
        visibility_secs: i32,
    ) -> Result<(), ApiError> {
        let (reply, answer) = oneshot::channel();
        let lost = || {
            ApiError::new(
                ApiErrorKind::Transient,
                "BatcherStopped",
                "the batching task stopped",
            )
        };
        self.tx
            .send(Request {
                delete,
                receipt_handle,
                visibility_secs,
                reply,
            })
            .map_err(|_| lost())?;
        answer.await.map_err(|_| lost())?
    }
}

/// How long the first request of a round waits for a batch to fill. Short
/// next to anything it delays: a delete or release lands 20 ms later, and a
/// visibility extension is sent with two thirds of the timeout still left.
pub(crate) const LINGER: Duration = Duration::from_millis(20);

async fn run(mut rx: mpsc::UnboundedReceiver<Request>, api: Arc<dyn SqsApi>, url: Arc<str>) {
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        // Until either kind has a full call's worth, or the linger is over.
        loop {
            while let Ok(r) = rx.try_recv() {
                pending.push(r);
            }
            let deletes = pending.iter().filter(|r| r.delete).count();
            if deletes >= MAX_BATCH_ENTRIES || pending.len() - deletes >= MAX_BATCH_ENTRIES {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => pending.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        let (mut deletes, mut changes): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|r| r.delete);
        // A change whose requester stopped waiting (a renewal given up, or a
        // task that ended and released its message) is not sent: landing
        // after the release it would hide the message again. One already
        // sent can still land late; the lease waits a moment for those.
        changes.retain(|r| !r.reply.is_closed());
        while !changes.is_empty() {
            let chunk: Vec<_> = changes
                .drain(..changes.len().min(MAX_BATCH_ENTRIES))
                .collect();
            tokio::spawn(send(api.clone(), url.clone(), chunk, false));
        }
        while !deletes.is_empty() {
            let chunk: Vec<_> = deletes
                .drain(..deletes.len().min(MAX_BATCH_ENTRIES))
                .collect();
            tokio::spawn(send(api.clone(), url.clone(), chunk, true));
        }
    }
}

async fn send(api: Arc<dyn SqsApi>, url: Arc<str>, chunk: Vec<Request>, delete: bool) {
    let entries: Vec<BatchEntry> = chunk
        .iter()
        .enumerate()
        .map(|(i, r)| BatchEntry {
            id: i.to_string(),
            receipt_handle: r.receipt_handle.clone(),
            visibility_secs: r.visibility_secs,
        })
        .collect();
    let operation = if delete {
        Operation::DeleteMessageBatch
    } else {
        Operation::ChangeMessageVisibilityBatch
    };
    let results = if delete {
        api.delete_batch(&url, &entries).await
    } else {
        api.change_visibility_batch(&url, &entries).await
    };
    if let Err(error) = &results {
        BatchCallFailed { operation, error }.emit();
    }
    match results {
        Err(err) => {
            for r in chunk {
                let _ = r.reply.send(Err(err.clone()));
            }
        }
        Ok(results) => {
            let mut by_id: std::collections::HashMap<String, Option<ApiError>> =
                results.into_iter().map(|e| (e.id, e.error)).collect();
            for (i, r) in chunk.into_iter().enumerate() {
                let outcome = match by_id.remove(&i.to_string()) {
                    Some(None) => Ok(()),
                    Some(Some(err)) => {
                        BatchCallFailed {
                            operation,
                            error: &err,
                        }
                        .emit();
                        Err(err)
                    }
                    None => Err(ApiError::new(
                        ApiErrorKind::Transient,
                        "NoEntryResult",
                        "the batch answer did not mention this entry",
                    )),
                };
                let _ = r.reply.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::FakeSqs;
    use crate::aws::{ReceiveRequest, SqsApi};

    const URL: &str = "http://localhost:4566/000000000000/q";

    async fn receive_all(fake: &FakeSqs, n: usize) -> Vec<String> {
        let mut handles = Vec::new();
        while handles.len() < n {
            let got = fake
                .receive(ReceiveRequest {
                    queue_url: URL,
                    max_messages: 10,
                    wait_secs: 0,
                    visibility_secs: 30,
                    attribute: None,
                })
                .await
                .unwrap();
            handles.extend(got.into_iter().map(|m| m.receipt_handle));
        }
        handles
    }

    #[tokio::test]
    async fn requests_made_together_go_out_in_batches_of_ten() {
        let fake = FakeSqs::new();
        for i in 0..25 {
            fake.send(URL, &i.to_string());
        }
        let handles = receive_all(&fake, 25).await;
        let batcher = Batcher::spawn(Arc::new(fake.clone()), URL.into());
        let results = futures::future::join_all(
            handles
                .iter()
                .map(|h| batcher.change_visibility(h.clone(), 120)),
        )
        .await;
        assert!(results.iter().all(Result::is_ok));
        let sizes: Vec<usize> = fake.visibility_calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert!(
            fake.visibility_calls()[0]
                .iter()
                .all(|e| e.visibility_secs == 120)
        );

        let results =
            futures::future::join_all(handles.iter().map(|h| batcher.delete(h.clone()))).await;
        assert!(results.iter().all(Result::is_ok));
        let sizes: Vec<usize> = fake.delete_calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(fake.deleted().len(), 25);
    }

    #[tokio::test]
    async fn each_requester_gets_its_own_entrys_failure() {
        let fake = FakeSqs::new();
        for i in 0..3 {
            fake.send(URL, &i.to_string());
        }
        let handles = receive_all(&fake, 3).await;
        fake.fail_entry(
            &handles[1],
            ApiError::new(ApiErrorKind::Rejected, "ReceiptHandleIsInvalid", "gone"),
        );
        let batcher = Batcher::spawn(Arc::new(fake.clone()), URL.into());
        let results =
            futures::future::join_all(handles.iter().map(|h| batcher.delete(h.clone()))).await;
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().code,
            "ReceiptHandleIsInvalid"
        );
        assert_eq!(fake.delete_calls().len(), 1, "one call for the three");
        assert_eq!(fake.deleted().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_goes_out_within_the_linger() {
        let fake = FakeSqs::new();
        fake.send(URL, "x");
        let handles = receive_all(&fake, 1).await;
        let batcher = Batcher::spawn(Arc::new(fake.clone()), URL.into());
        let asked = tokio::time::Instant::now();
        batcher
            .change_visibility(handles[0].clone(), 0)
            .await
            .unwrap();
        assert!(asked.elapsed() <= LINGER, "{:?}", asked.elapsed());
        assert_eq!(fake.visible(URL), 1, "visibility 0 releases the message");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_a_few_ms_apart_share_a_call_and_later_ones_do_not() {
        let fake = FakeSqs::new();
        for i in 0..4 {
            fake.send(URL, &i.to_string());
        }
        let handles = receive_all(&fake, 4).await;
        let batcher = Batcher::spawn(Arc::new(fake.clone()), URL.into());
        let step = LINGER / 4;
        let mut asked = Vec::new();
        for (i, h) in handles[..3].iter().enumerate() {
            let (b, h) = (batcher.clone(), h.clone());
            asked.push(tokio::spawn(async move {
                tokio::time::sleep(step * i as u32).await;
                b.delete(h).await
            }));
        }
        // The control: asked after the first round's linger is over.
        let (b, h) = (batcher.clone(), handles[3].clone());
        asked.push(tokio::spawn(async move {
            tokio::time::sleep(LINGER * 2).await;
            b.delete(h).await
        }));
        for a in asked {
            a.await.unwrap().unwrap();
        }
        let sizes: Vec<usize> = fake.delete_calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 1]);
    }
}
