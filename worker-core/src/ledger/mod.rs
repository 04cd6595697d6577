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

use tokio::time::Instant;

use crate::aws::ApiError;
use crate::aws::ledger::{Claim, ClaimRequest, LedgerApi, Stored};
use crate::completion::Report;
use crate::handler::TaskError;
use config::LedgerConfig;

/// The pauses between attempts of a claim whose calls fail (throttled, 5xx,
/// no answer): about 12 s of trying, the task kept alive meanwhile, before
/// the ledger counts as unreachable. A throttled burst or a blip is ridden
/// out (with 45% of calls failing, as the chaos suite injects, fourteen
/// attempts all fail about once in 100,000 claims); an outage is not waited
/// on for longer than that, since the task holds its slot.
const CLAIM_RETRIES: &[Duration] = &[
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
];
/// A settle matters more (without it a later copy runs the task again), and
/// the handler's work is done: as long, and its report waits for it.
const SETTLE_RETRIES: &[Duration] = CLAIM_RETRIES;
const RELEASE_RETRIES: &[Duration] = &[Duration::from_millis(200)];

/// The process's view of the ledger table.
pub(crate) struct Ledger {
    api: Arc<dyn LedgerApi>,
    /// This process: the worker's name and a random id (a container
    /// restarted with the same name and pid is another holder). Each claim
    /// adds an id of its own.
    holder: String,
    lease: Duration,
    keep: Duration,
    clock: Clock,
}

/// Where "now" comes from: the wall clock (every worker's claims are
/// compared by it, so it is read each time: an NTP step is picked up), or
/// in tests tokio's clock from a wall-clock start (a paused clock stays
/// deterministic).
enum Clock {
    Wall,
    #[cfg_attr(not(test), allow(dead_code))]
    Tokio {
        epoch_ms: u64,
        epoch: Instant,
    },
}

/// A held-elsewhere copy comes back this long after the other worker's
/// claim would end: by then it has settled (the copy is then dropped) or
/// died (the copy takes over).
const AFTER_THE_LEASE: Duration = Duration::from_secs(2);

/// What a claim decided.
pub(crate) enum Decision {
    /// Run the handler, holding this claim (`None`: run without one,
    /// `fail_open` with the ledger unreachable).
    Run(Option<Arc<Held>>),
    /// Another worker's claim is live, for this long unless renewed.
    HeldElsewhere(Duration),
    /// Settled already: send this again.
    Completed(Report),
    /// The ledger could not be reached (the binding is `fail_closed`).
    Unreachable(ApiError),
}

/// A claim this worker holds.
pub(crate) struct Held {
    ledger: Arc<Ledger>,
    key: String,
    /// The process's holder and this claim's own id: a second task of the
    /// same token in this process (another binding) is another holder.
    holder: String,
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

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Ledger {
    pub fn new(api: Arc<dyn LedgerApi>, config: &LedgerConfig, worker_name: &str) -> Self {
        let id: u64 = rand::random();
        Self {
            api,
            holder: format!("{worker_name}/{id:016x}"),
            lease: Duration::from_secs(config.lease_secs.get()),
            keep: Duration::from_secs(config.keep_secs.get()),
            clock: Clock::Wall,
        }
    }

    /// Times from tokio's clock: the same as the wall clock while tokio's
    /// clock is not paused, and simulated time while it is (the simulation,
    /// and tests under a paused clock). One epoch for the whole process, so
    /// that ledgers made at different (simulated) times agree on the time.
    pub(crate) fn on_tokio_clock(mut self) -> Self {
        static EPOCH: std::sync::OnceLock<(u64, Instant)> = std::sync::OnceLock::new();
        let (epoch_ms, epoch) = *EPOCH.get_or_init(|| (wall_ms(), Instant::now()));
        self.clock = Clock::Tokio { epoch_ms, epoch };
        self
    }

    fn now_ms(&self) -> u64 {
        match &self.clock {
            Clock::Wall => wall_ms(),
            Clock::Tokio { epoch_ms, epoch } => epoch_ms
                .saturating_add(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
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
        let id: u32 = rand::random();
        let holder = format!("{}/{id:08x}", self.holder);
        let answer = retried(CLAIM_RETRIES, || {
            let now_ms = self.now_ms();
            let lease_ms = now_ms.saturating_add(lease_ms(self.lease));
            let request = ClaimRequest {
                key: &key,
                holder: &holder,
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
                holder,
                took_over,
            }))),
            Claim::HeldElsewhere { lease_ms } => Decision::HeldElsewhere(
                Duration::from_millis(lease_ms.saturating_sub(self.now_ms())).min(self.lease)
                    + AFTER_THE_LEASE,
            ),
            Claim::Completed(stored) => Decision::Completed(match stored {
                Stored::Success(output) => Report::Success(output),
                Stored::Failure { error, cause } => Report::Failure(TaskError::new(error, cause)),
            }),
        })
    }
}

impl Held {
    /// Extend the claim by a lease from now.
    /// A renewal unanswered for a sixth of the lease is given up (and tried
    /// again a second later): with the shortest lease, one hung call must
    /// not use up the two thirds of it that are left.
    pub async fn renew(&self) -> Renewal {
        let l = &self.ledger;
        let lease_ms = l.now_ms().saturating_add(lease_ms(l.lease));
        let call = l
            .api
            .renew(&self.key, &self.holder, lease_ms, l.expires_at(lease_ms));
        let answer = tokio::time::timeout(l.lease / 6, call)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::new(
                    crate::aws::ApiErrorKind::Transient,
                    "Timeout",
                    "no answer within a sixth of the lease",
                ))
            });
        match answer {
            Ok(true) => Renewal::Kept,
            Ok(false) => Renewal::Lost,
            Err(e) => {
                tracing::debug!(code = %e.code, error = %e.message, "ledger claim not renewed; trying again soon");
                Renewal::Failed
            }
        }
    }

    /// Mark the task `COMPLETED` with `report` (a failure already redacted
    /// of `token`; a success's output is redacted here: the table never
    /// holds a token, so a handler that echoes its input stores `<token
    /// FINGERPRINT>` in its place): `Ok(false)` if the claim was taken over
    /// meanwhile.
    pub async fn settle(&self, report: &Report, token: &str) -> Result<bool, ApiError> {
        let l = &self.ledger;
        let stored = match report {
            Report::Success(output) => Stored::Success(crate::redact(output, token).into_owned()),
            Report::Failure(e) => Stored::Failure {
                error: e.error().to_owned(),
                cause: e.cause().to_owned(),
            },
        };
        let expires_at = l.expires_at(l.now_ms());
        retried(SETTLE_RETRIES, || {
            l.api.settle(&self.key, &self.holder, &stored, expires_at)
        })
        .await
    }

    /// Give the claim up: the task was not run to its end here.
    pub async fn release(&self) -> Result<(), ApiError> {
        let l = &self.ledger;
        retried(RELEASE_RETRIES, || l.api.release(&self.key, &self.holder)).await
    }

    /// How often the claim is renewed.
    pub fn renew_every(&self) -> Duration {
        self.ledger.renew_every()
    }
}

/// The ledger's key for a token: its SHA-256 in hex (the table never holds
/// a token).
pub(crate) fn key(token: &str) -> String {
    crate::fingerprint::sha256_hex(token, 32)
}

fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}

/// `call` until it succeeds, a failure that retrying cannot help, the
/// pauses run out, or [`PATIENCE`] has passed (calls that time out one by
/// one would otherwise take minutes).
async fn retried<T, F, Fut>(pauses: &[Duration], call: F) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let attempts = async {
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
    };
    tokio::time::timeout(PATIENCE, attempts)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                crate::aws::ApiErrorKind::Transient,
                "Timeout",
                format!("the ledger did not answer within {} s", PATIENCE.as_secs()),
            ))
        })
}

/// The longest a claim or a settle is tried, however its calls fail.
const PATIENCE: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ledger::fake::FakeLedger;

    fn ledger(api: Arc<FakeLedger>, name: &str) -> Arc<Ledger> {
        Arc::new(Ledger::new(api, &LedgerConfig::new("t"), name).on_tokio_clock())
    }

    #[test]
    fn the_key_is_a_hash_not_the_token() {
        let k = key("secret-token");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("secret"));
        assert_eq!(k, key("secret-token"));
        // SHA-256 in lower-case hex (as `sha256sum` prints it), and the
        // fingerprint logs carry is its first 12 digits.
        assert_eq!(
            k,
            "930bbdc51b6aed5c2a5678fd6e28dee7a05e8a4b643cfc0b4427c3efb86c0d94"
        );
        assert_eq!(k[..12], crate::fingerprint::fingerprint("secret-token"));
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
            Decision::HeldElsewhere(_)
        ));
        assert!(
            held.settle(&Report::Success("{\"ok\":1}".into()), "t1")
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
            Decision::HeldElsewhere(_)
        ));
        tokio::time::advance(Duration::from_secs(31)).await;
        let Decision::Run(Some(new)) = b.claim("t").await.unwrap() else {
            panic!("b should take over")
        };
        assert!(new.took_over);
        assert_eq!(old.renew().await, Renewal::Lost);
        assert!(!old.settle(&Report::Success("x".into()), "t").await.unwrap());
        // Releasing a claim that is not ours leaves it alone.
        old.release().await.unwrap();
        assert!(matches!(
            a.claim("t").await.unwrap(),
            Decision::HeldElsewhere(_)
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
            Decision::HeldElsewhere(_)
        ));
        held.release().await.unwrap();
        let Decision::Run(Some(next)) = b.claim("t").await.unwrap() else {
            panic!()
        };
        assert!(!next.took_over, "a released claim is not a takeover");
    }

    /// Review of issue 24: the holder was the process, so a second task of
    /// one token in the same process (another binding) won the claim too.
    #[tokio::test(start_paused = true)]
    async fn two_tasks_of_one_token_in_one_process_are_two_holders() {
        let a = ledger(Arc::new(FakeLedger::new()), "a");
        assert!(matches!(
            a.claim("t").await.unwrap(),
            Decision::Run(Some(_))
        ));
        assert!(matches!(
            a.claim("t").await.unwrap(),
            Decision::HeldElsewhere(_)
        ));
    }

    /// Review of issue 24: a success's output was stored as is, so a
    /// handler echoing its input put the token in the table.
    #[tokio::test(start_paused = true)]
    async fn a_success_quoting_the_token_is_stored_without_it() {
        const TOKEN: &str = "AAAAKgAAAAIAAAAAAAAAAf+secret/token=material";
        let table = Arc::new(FakeLedger::new());
        let a = ledger(table.clone(), "a");
        let Decision::Run(Some(held)) = a.claim(TOKEN).await.unwrap() else {
            panic!()
        };
        let output = format!("{{\"taskToken\":\"{TOKEN}\",\"ok\":true}}");
        assert!(held.settle(&Report::Success(output), TOKEN).await.unwrap());
        let Some(Stored::Success(stored)) = table.completed(&key(TOKEN)) else {
            panic!()
        };
        assert!(!stored.contains(TOKEN), "{stored}");
        assert!(stored.contains(&crate::fingerprint(TOKEN)), "{stored}");
        // The wait before a held-elsewhere copy looks again: the rest of
        // the claim's lease and a little more, never more than a lease.
        let Decision::HeldElsewhere(wait) = a
            .claim("other")
            .await
            .map(|_| ())
            .and(a.claim("other").await)
            .unwrap()
        else {
            panic!()
        };
        assert!(
            wait > Duration::from_secs(60) && wait <= Duration::from_secs(62),
            "{wait:?}"
        );
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
