//! Each worker's clients of the simulated services: the seam traits the
//! real clients implement, with faults drawn from the seed. A killed
//! worker's calls never return (its process is gone).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sfn_worker_core::aws::ledger::{Claim, ClaimRequest, LedgerApi, Stored, TableShape};
use sfn_worker_core::aws::{
    ActivityTask, ApiError, ApiErrorKind, BatchEntry, CompletionTarget, EntryResult, Message,
    ReceiveRequest, SfnApi, SqsApi, TargetOperations,
};

use crate::world::{Event, Fault, WorkerId, World};

/// The real clients' call timeout: a hung call ends as `Timeout` then.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// A long poll's client timeout.
const POLL_HOLD: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Client {
    pub world: Arc<World>,
    pub worker: WorkerId,
}

/// The binding index in a name that ends with `b<index>` (or `b<index>.fifo`).
pub fn binding_of(name: &str) -> usize {
    let name = name.trim_end_matches(".fifo");
    let digits = name.rsplit('b').next().unwrap_or("0");
    digits.parse().unwrap_or(0)
}

fn timeout() -> ApiError {
    ApiError::new(ApiErrorKind::Transient, "Timeout", "no answer within 15 s")
}

fn reset() -> ApiError {
    ApiError::new(
        ApiErrorKind::Transient,
        "DispatchFailure",
        "connection reset",
    )
}

impl Client {
    /// Never returns once this worker is dead.
    async fn alive(&self) {
        if !self.world.is_alive(self.worker) {
            std::future::pending::<()>().await;
        }
    }

    /// A `SendTask*` request on its way: it may stall before the service
    /// sees it (while it stalls, its attempt can be overtaken or dropped by
    /// the worker without the service ever seeing it).
    async fn on_the_way(&self, keepalive: bool) {
        self.alive().await;
        if let Some(stall) = self.world.send_delay(keepalive) {
            tokio::time::sleep(stall).await;
            self.alive().await;
        }
    }

    /// One call: a fault from the seed, then `apply` (what the service does).
    async fn call<T>(
        &self,
        keepalive: bool,
        apply: impl FnOnce() -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.alive().await;
        let result = match self.world.draw(keepalive) {
            Fault::None => apply(),
            Fault::Before(e) => Err(e),
            Fault::Lost(after) => {
                let _ = apply();
                tokio::time::sleep(after).await;
                Err(reset())
            }
            Fault::Late(after) => {
                let r = apply();
                tokio::time::sleep(after).await;
                r
            }
            Fault::Hung => {
                tokio::time::sleep(CALL_TIMEOUT).await;
                Err(timeout())
            }
        };
        self.alive().await;
        result
    }
}

#[async_trait]
impl SfnApi for Client {
    async fn get_activity_task(
        &self,
        activity_arn: &str,
        _worker_name: &str,
    ) -> Result<Option<ActivityTask>, ApiError> {
        self.alive().await;
        let fault = self.world.draw(false);
        if let Fault::Before(e) = fault {
            return Err(e);
        }
        let binding = binding_of(activity_arn);
        let deadline = tokio::time::Instant::now() + POLL_HOLD;
        loop {
            let changed = self.world.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some((token, input)) = self.world.take_activity_task(binding) {
                if !self.world.is_alive(self.worker) {
                    // Assigned to a poll whose process is gone: nobody has it.
                    self.world.handed_activity(&token, None);
                    std::future::pending::<()>().await;
                }
                if let Fault::Lost(after) = fault {
                    self.world.handed_activity(&token, None);
                    tokio::time::sleep(after).await;
                    return Err(reset());
                }
                self.world.handed_activity(&token, Some(self.worker));
                return Ok(Some(ActivityTask { token, input }));
            }
            tokio::select! {
                biased;
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    self.alive().await;
                    return Ok(None);
                }
            }
        }
    }

    async fn send_task_success(&self, token: &str, output: &str) -> Result<(), ApiError> {
        let _ = output;
        self.on_the_way(false).await;
        self.call(false, || {
            self.world.report(token, self.worker, false, true, "", "")
        })
        .await
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), ApiError> {
        self.on_the_way(false).await;
        self.call(false, || {
            self.world
                .report(token, self.worker, false, false, error, cause)
        })
        .await
    }

    async fn send_task_heartbeat(&self, token: &str) -> Result<(), ApiError> {
        self.on_the_way(true).await;
        self.world.arrived(Event::HeartbeatCall {
            token: token.to_owned(),
            worker: self.worker,
        });
        self.call(true, || self.world.heartbeat(token, self.worker, false))
            .await
    }

    async fn describe_activity(&self, _activity_arn: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

#[async_trait]
impl SqsApi for Client {
    async fn receive(&self, r: ReceiveRequest<'_>) -> Result<Vec<Message>, ApiError> {
        self.alive().await;
        let fault = self.world.draw(false);
        match &fault {
            Fault::Before(e) => return Err(e.clone()),
            Fault::Hung => {
                tokio::time::sleep(CALL_TIMEOUT + Duration::from_secs(20)).await;
                self.alive().await;
                return Err(timeout());
            }
            _ => {}
        }
        let q = binding_of(r.queue_url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(r.wait_secs.max(0) as u64);
        let visibility = r.visibility_secs.max(0) as u64;
        let max = r.max_messages.clamp(1, 10) as usize;
        loop {
            let changed = self.world.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let lost = matches!(fault, Fault::Lost(_)) || !self.world.is_alive(self.worker);
            let got = self
                .world
                .receive(q, max, visibility, (!lost).then_some(self.worker));
            if !got.is_empty() {
                match fault {
                    Fault::Lost(after) => {
                        tokio::time::sleep(after).await;
                        self.alive().await;
                        return Err(reset());
                    }
                    Fault::Late(after) => tokio::time::sleep(after).await,
                    _ => {}
                }
                self.alive().await;
                let handles: Vec<String> = got.iter().map(|(_, h, _, _, _)| h.clone()).collect();
                self.world.handed(&handles, self.worker);
                return Ok(got
                    .into_iter()
                    .map(
                        |(message_id, receipt_handle, body, group_id, sent)| Message {
                            message_id,
                            receipt_handle,
                            body,
                            group_id,
                            attribute: None,
                            trace_header: None,
                            sent_timestamp_ms: Some(sent),
                        },
                    )
                    .collect());
            }
            tokio::select! {
                biased;
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    self.alive().await;
                    return Ok(Vec::new());
                }
            }
        }
    }

    async fn change_visibility_batch(
        &self,
        _queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        let keepalive = entries.iter().any(|e| e.visibility_secs > 0);
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!(
                "{:?} client change_visibility_batch by {}: {entries:?}",
                self.world.now(),
                self.worker
            );
        }
        self.alive().await;
        for e in entries {
            let (handle, worker) = (e.receipt_handle.clone(), self.worker);
            self.world.arrived(if e.visibility_secs > 0 {
                Event::RenewCall { handle, worker }
            } else {
                Event::ReleaseCall { handle, worker }
            });
        }
        let results = self
            .call(keepalive, || {
                Ok(entries
                    .iter()
                    .map(|e| EntryResult {
                        id: e.id.clone(),
                        error: if self.world.entry_fails() {
                            Some(ApiError::service("InternalError", 500, "injected"))
                        } else {
                            self.world
                                .change_visibility(
                                    &e.receipt_handle,
                                    e.visibility_secs.max(0) as u64,
                                    self.worker,
                                )
                                .err()
                        },
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        // What the worker now knows: these receipts are not its own.
        for (e, r) in entries.iter().zip(&results) {
            if e.visibility_secs > 0
                && r.error.as_ref().is_some_and(|err| {
                    matches!(
                        err.code.as_str(),
                        "ReceiptHandleIsInvalid" | "MessageNotInflight"
                    )
                })
            {
                self.world.arrived(Event::RenewRefused {
                    handle: e.receipt_handle.clone(),
                    worker: self.worker,
                });
            }
        }
        Ok(results)
    }

    async fn delete_batch(
        &self,
        _queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        self.alive().await;
        for e in entries {
            self.world.arrived(Event::DeleteCall {
                handle: e.receipt_handle.clone(),
                worker: self.worker,
            });
        }
        self.call(false, || {
            Ok(entries
                .iter()
                .map(|e| EntryResult {
                    id: e.id.clone(),
                    error: if self.world.entry_fails() {
                        Some(ApiError::service("InternalError", 500, "injected"))
                    } else {
                        self.world.delete(&e.receipt_handle, self.worker).err()
                    },
                })
                .collect())
        })
        .await
    }

    async fn check_queue(&self, _queue_url: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Durable callbacks: the same rules, on Lambda's API.
#[derive(Clone)]
pub struct Lambda(pub Client);

#[async_trait]
impl CompletionTarget for Lambda {
    fn operations(&self) -> TargetOperations {
        TargetOperations::DURABLE_CALLBACK
    }
    fn permissions(&self) -> &'static str {
        "lambda:SendDurableExecutionCallback*"
    }
    async fn succeed(&self, id: &str, _output: &str) -> Result<(), ApiError> {
        let c = &self.0;
        c.on_the_way(false).await;
        c.call(false, || c.world.report(id, c.worker, true, true, "", ""))
            .await
    }
    async fn fail(&self, id: &str, error: &str, cause: &str) -> Result<(), ApiError> {
        let c = &self.0;
        c.on_the_way(false).await;
        c.call(false, || {
            c.world.report(id, c.worker, true, false, error, cause)
        })
        .await
    }
    async fn heartbeat(&self, id: &str) -> Result<(), ApiError> {
        let c = &self.0;
        c.on_the_way(true).await;
        c.world.arrived(Event::HeartbeatCall {
            token: id.to_owned(),
            worker: c.worker,
        });
        c.call(true, || c.world.heartbeat(id, c.worker, true)).await
    }
}

/// The three clients of one worker.
pub fn clients(world: &Arc<World>, worker: WorkerId) -> (Arc<Client>, Arc<Lambda>) {
    let c = Client {
        world: world.clone(),
        worker,
    };
    (Arc::new(c.clone()), Arc::new(Lambda(c)))
}

/// A worker's client of the fleet's task ledger: the seed's one table (a
/// `FakeLedger`, which keeps DynamoDB's conditions), every claim's answer
/// recorded in the history. A dead worker's calls never return.
pub struct Ledger(pub Client);

#[async_trait]
impl LedgerApi for Ledger {
    async fn claim(&self, request: &ClaimRequest<'_>) -> Result<Claim, ApiError> {
        self.0.alive().await;
        let answer = self.0.world.ledger.claim(request).await;
        if let Ok(claim) = &answer {
            let held_elsewhere = matches!(claim, Claim::HeldElsewhere { .. });
            self.0
                .world
                .claim_answered(request.key, self.0.worker, held_elsewhere);
        }
        answer
    }

    async fn renew(
        &self,
        key: &str,
        holder: &str,
        lease_ms: u64,
        expires_at: u64,
    ) -> Result<bool, ApiError> {
        self.0.alive().await;
        self.0
            .world
            .ledger
            .renew(key, holder, lease_ms, expires_at)
            .await
    }

    async fn settle(
        &self,
        key: &str,
        holder: &str,
        outcome: &Stored,
        expires_at: u64,
    ) -> Result<bool, ApiError> {
        self.0.alive().await;
        self.0
            .world
            .ledger
            .settle(key, holder, outcome, expires_at)
            .await
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), ApiError> {
        self.0.alive().await;
        self.0.world.ledger.release(key, holder).await
    }

    async fn describe(&self) -> Result<TableShape, ApiError> {
        self.0.world.ledger.describe().await
    }
}
