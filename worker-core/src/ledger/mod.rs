//! The fleet's task ledger: one run per task across every worker.
//!
//! SQS delivers at least once, and two workers may each receive a copy of
//! a message (or of its body, sent twice). Within one process the SQS
//! source joins copies; across processes, a binding with `ledger = true`
//! claims each task in a DynamoDB table before its handler runs
//! ([`crate::aws::ledger`], conditional writes), so exactly one worker wins:
//!
//! - **won** (or **took over** a claim whose lease ended: its worker died):
//!   the handler runs; the claim is renewed on the task's keep-alive timer;
//!   before the report is sent the item is marked `COMPLETED` with the
//!   outcome (so a copy that arrives later sends that outcome again instead
//!   of running the handler); a task given back (shutdown, lost lease) has
//!   its claim released so the next delivery runs at once;
//! - **held elsewhere**: not run; an SQS message is left to come back after
//!   its visibility timeout (by then the other worker has settled it, or
//!   died and its claim can be taken over); an activity task is left to the
//!   worker holding it;
//! - **completed**: not run; the stored outcome is sent again (the task may
//!   still be open if the first report was lost) and the message deleted;
//! - **unreachable**: as the binding's `ledger_unreachable` says.
//!
//! Claims are compared by the workers' clocks (`lease_ms`), so the lease
//! must be far longer than the clocks' skew (NTP keeps it to milliseconds;
//! the shortest lease is 10 s).

pub(crate) mod config;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::aws::ApiError;
use crate::aws::ledger::{Claim, ClaimRequest, LedgerApi, Stored};
use crate::completion::Report;
use crate::handler::TaskError;
use config::LedgerConfig;

/// Attempts of a claim before the ledger counts as unreachable, and the
/// pause before each retry: a blip is ridden out, an outage is not waited
/// on (the task is kept alive meanwhile, but its slot is taken).
const CLAIM_RETRIES: &[Duration] = &[Duration::from_millis(100), Duration::from_millis(400)];
/// A settle matters more (without it a later copy runs the task again), and
/// the handler's work is done: more attempts, still bounded (the report
/// waits for it).
const SETTLE_RETRIES: &[Duration] = &[
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1600),
    Duration::from_millis(3200),
];
const RELEASE_RETRIES: &[Duration] = &[Duration::from_millis(200)];

/// The process's view of the ledger table.
pub(crate) struct Ledger {
    api: Arc<dyn LedgerApi>,
    /// This process: the worker's name and a random id (a container
    /// restarted with the same name and pid is another holder).
    holder: String,
    lease: Duration,
    keep: Duration,
    /// Wall-clock time at `epoch`: times are read from tokio's clock from
    /// there on, so a simulation under a paused clock stays deterministic.
    epoch_ms: u64,
    epoch: Instant,
}

/// What a claim decided.
pub(crate) enum Decision {
    /// Run the handler, holding this claim (`None`: run without one,
    /// `fail_open` with the ledger unreachable).
    Run(Option<Arc<Held>>),
    /// Another worker's claim is live.
    HeldElsewhere,
    /// Settled already: send this again.
    Completed(Report),
    /// The ledger could not be reached (the binding is `fail_closed`).
    Unreachable(ApiError),
}

/// A claim this worker holds.
pub(crate) struct Held {
    ledger: Arc<Ledger>,
    key: String,
    pub took_over: bool,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    Kept,
    Failed,
    /// Not this worker's claim any more.
    Lost,
}

impl Ledger {
    pub fn new(api: Arc<dyn LedgerApi>, config: &LedgerConfig, worker_name: &str) -> Self {
        let id: u64 = rand::random();
        Self {
            api,
            holder: format!("{worker_name}/{id:016x}"),
            lease: Duration::from_secs(config.lease_secs.get()),
            keep: Duration::from_secs(config.keep_secs.get()),
            epoch_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        let since = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.epoch_ms.saturating_add(since)
    }

    fn expires_at(&self, from_ms: u64) -> u64 {
        (from_ms / 1000).saturating_add(self.keep.as_secs())
    }

    /// How often a held claim is renewed.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Claim the task with `token`, retrying a failing call a little.
    pub async fn claim(self: &Arc<Self>, token: &str) -> Result<Decision, ApiError> {
        let key = key(token);
        let answer = retried(CLAIM_RETRIES, || {
            let now_ms = self.now_ms();
            let lease_ms = now_ms.saturating_add(lease_ms(self.lease));
            let request = ClaimRequest {
                key: &key,
                holder: &self.holder,
                now_ms,
                lease_ms,
                expires_at: self.expires_at(lease_ms),
            };
            async move { self.api.claim(&request).await }
        })
        .await?;
        Ok(match answer {
            Claim::Won { took_over } => Decision::Run(Some(Arc::new(Held {
                ledger: self.clone(),
                key,
                took_over,
            }))),
            Claim::HeldElsewhere { .. } => Decision::HeldElsewhere,
            Claim::Completed(stored) => Decision::Completed(match stored {
                Stored::Success(output) => Report::Success(output),
                Stored::Failure { error, cause } => Report::Failure(TaskError::new(error, cause)),
            }),
        })
    }
}

impl Held {
    /// Extend the claim by a lease from now.
    pub async fn renew(&self) -> Renewal {
        let l = &self.ledger;
        let lease_ms = l.now_ms().saturating_add(lease_ms(l.lease));
        match l
            .api
            .renew(&self.key, &l.holder, lease_ms, l.expires_at(lease_ms))
            .await
        {
            Ok(true) => Renewal::Kept,
            Ok(false) => Renewal::Lost,
            Err(e) => {
                tracing::debug!(code = %e.code, error = %e.message, "ledger claim not renewed; trying again soon");
                Renewal::Failed
            }
        }
    }

    /// Mark the task `COMPLETED` with `report` (already redacted of the
    /// token): `Ok(false)` if the claim was taken over meanwhile.
    pub async fn settle(&self, report: &Report) -> Result<bool, ApiError> {
        let l = &self.ledger;
        let stored = match report {
            Report::Success(output) => Stored::Success(output.clone()),
            Report::Failure(e) => Stored::Failure {
                error: e.error().to_owned(),
                cause: e.cause().to_owned(),
            },
        };
        let expires_at = l.expires_at(l.now_ms());
        retried(SETTLE_RETRIES, || {
            l.api.settle(&self.key, &l.holder, &stored, expires_at)
        })
        .await
    }

    /// Give the claim up: the task was not run to its end here.
    pub async fn release(&self) -> Result<(), ApiError> {
        let l = &self.ledger;
        retried(RELEASE_RETRIES, || l.api.release(&self.key, &l.holder)).await
    }

    /// How often the claim is renewed.
    pub fn renew_every(&self) -> Duration {
        self.ledger.renew_every()
    }
}

/// The ledger's key for a token: its SHA-256 in hex (the table never holds
/// a token).
pub(crate) fn key(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}

/// `call` until it succeeds, a failure that retrying cannot help, or the
/// pauses run out.
async fn retried<T, F, Fut>(pauses: &[Duration], call: F) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut pauses = pauses.iter();
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(e) if e.is_retryable() => match pauses.next() {
                Some(pause) => tokio::time::sleep(*pause).await,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ledger::fake::FakeLedger;

    fn ledger(api: Arc<FakeLedger>, name: &str) -> Arc<Ledger> {
        Arc::new(Ledger::new(api, &LedgerConfig::new("t"), name))
    }

    #[test]
    fn the_key_is_a_hash_not_the_token() {
        let k = key("secret-token");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("secret"));
        assert_eq!(k, key("secret-token"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_worker_wins_and_the_other_sees_its_claim_then_its_outcome() {
        let table = Arc::new(FakeLedger::new());
        let (a, b) = (ledger(table.clone(), "a"), ledger(table.clone(), "b"));
        let Decision::Run(Some(held)) = a.claim("t1").await.unwrap() else {
            panic!("a should win");
        };
        assert!(!held.took_over);
        assert!(matches!(
            b.claim("t1").await.unwrap(),
            Decision::HeldElsewhere
        ));
        assert!(
            held.settle(&Report::Success("{\"ok\":1}".into()))
                .await
                .unwrap()
        );
        match b.claim("t1").await.unwrap() {
            Decision::Completed(Report::Success(out)) => assert_eq!(out, "{\"ok\":1}"),
            _ => panic!("b should see the outcome"),
        }
        // Control: another token is claimed freely.
        assert!(matches!(
            b.claim("t2").await.unwrap(),
            Decision::Run(Some(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_whose_lease_ended_is_taken_over_and_the_old_holder_loses_it() {
        let table = Arc::new(FakeLedger::new());
        let (a, b) = (ledger(table.clone(), "a"), ledger(table.clone(), "b"));
        let Decision::Run(Some(old)) = a.claim("t").await.unwrap() else {
            panic!()
        };
        tokio::time::advance(Duration::from_secs(30)).await;
        // Control: within the lease it is still a's.
        assert!(matches!(
            b.claim("t").await.unwrap(),
            Decision::HeldElsewhere
        ));
        tokio::time::advance(Duration::from_secs(31)).await;
        let Decision::Run(Some(new)) = b.claim("t").await.unwrap() else {
            panic!("b should take over")
        };
        assert!(new.took_over);
        assert_eq!(old.renew().await, Renewal::Lost);
        assert!(!old.settle(&Report::Success("x".into())).await.unwrap());
        // Releasing a claim that is not ours leaves it alone.
        old.release().await.unwrap();
        assert!(matches!(
            a.claim("t").await.unwrap(),
            Decision::HeldElsewhere
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_claim_is_claimed_at_once_and_renewal_keeps_one_alive() {
        let table = Arc::new(FakeLedger::new());
        let (a, b) = (ledger(table.clone(), "a"), ledger(table.clone(), "b"));
        let Decision::Run(Some(held)) = a.claim("t").await.unwrap() else {
            panic!()
        };
        for _ in 0..5 {
            tokio::time::advance(held.renew_every()).await;
            assert_eq!(held.renew().await, Renewal::Kept);
        }
        assert!(matches!(
            b.claim("t").await.unwrap(),
            Decision::HeldElsewhere
        ));
        held.release().await.unwrap();
        let Decision::Run(Some(next)) = b.claim("t").await.unwrap() else {
            panic!()
        };
        assert!(!next.took_over, "a released claim is not a takeover");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_ledger_is_an_error_after_a_few_attempts() {
        let table = Arc::new(FakeLedger::new());
        let a = ledger(table.clone(), "a");
        table.set_unreachable(true);
        assert!(a.claim("t").await.is_err());
        assert_eq!(table.calls(), 1 + CLAIM_RETRIES.len() as u64);
    }
}
