//! The lease on an SQS message while its task runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::QueueShared;
use super::in_flight::Deliveries;
use crate::config::{MAX_VISIBILITY_SECS, OnShutdown};
use crate::lease::{Lease, LeaseEnd};

/// Time kept back from SQS's 12-hour ceiling to report and delete.
const CEILING_MARGIN: Duration = Duration::from_secs(120);

pub(crate) struct MessageLease {
    pub queue: Arc<QueueShared>,
    pub token: String,
    pub deliveries: Arc<Deliveries>,
    pub received_at: Instant,
}

impl MessageLease {
    fn ceiling(&self) -> Instant {
        self.received_at + Duration::from_secs(MAX_VISIBILITY_SECS)
    }

    async fn set_visibility(&self, secs: i32) -> usize {
        let calls = self
            .deliveries
            .handles()
            .into_iter()
            .map(|h| self.queue.batcher.change_visibility(h, secs));
        let failures = futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(Result::err);
        let mut n = 0;
        for err in failures {
            n += 1;
            tracing::warn!(code = %err.code, error = %err.message, visibility_secs = secs, "changing the message's visibility failed");
        }
        n
    }
}

#[async_trait]
impl Lease for MessageLease {
    fn renew_every(&self) -> Option<Duration> {
        // A third of the timeout: two renewals can fail before it lapses.
        Some((self.queue.visibility / 3).max(Duration::from_secs(1)))
    }

    async fn renew(&self) {
        // Never ask past the ceiling: SQS refuses it.
        let left = self.ceiling().saturating_duration_since(Instant::now());
        let secs = self.queue.visibility.min(left).as_secs().max(1);
        self.set_visibility(i32::try_from(secs).unwrap_or(i32::MAX))
            .await;
    }

    fn hard_deadline(&self) -> Option<Instant> {
        Some(self.ceiling() - CEILING_MARGIN)
    }

    fn release_on_shutdown(&self) -> bool {
        self.queue.on_shutdown == OnShutdown::Release
    }

    async fn end(&self, how: LeaseEnd) {
        // Out of the in-flight set first: a duplicate arriving from now on
        // starts its own task (which will find the task closed) rather than
        // joining one whose handles were already settled.
        self.queue.in_flight.finish(&self.token);
        match how {
            LeaseEnd::Settled => {
                let deletes = self
                    .deliveries
                    .handles()
                    .into_iter()
                    .map(|h| self.queue.batcher.delete(h));
                for err in futures::future::join_all(deletes)
                    .await
                    .into_iter()
                    .filter_map(Result::err)
                {
                    tracing::warn!(code = %err.code, error = %err.message,
                        "deleting the message failed; it will come back and its task will be found closed");
                }
            }
            LeaseEnd::Keep => {
                tracing::warn!(
                    "leaving the message in the queue: it becomes visible again after its visibility timeout and is retried"
                );
            }
            LeaseEnd::Release => {
                if self.set_visibility(0).await == 0 {
                    tracing::info!("message released for another worker");
                }
            }
        }
    }
}
