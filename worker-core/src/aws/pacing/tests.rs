//! The pacer against a service that throttles as AWS does (a token bucket),
//! one that throttles at random whatever the rate, and both, under tokio's
//! paused clock. Each caller calls as fast as it is let and retries a
//! throttled call at once, as the worker's loops do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

const OP: Operation = Operation::SendTaskSuccess;
/// Each call's round trip.
const LATENCY: Duration = Duration::from_millis(2);

/// The service: a token bucket (`rate` per second, `burst`), and throttling
/// at random of `random` of the calls that pass it.
struct Service {
    bucket: Option<Mutex<(f64, Instant)>>,
    rate: f64,
    burst: f64,
    random: f64,
    rng: Mutex<u64>,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl Service {
    fn new(rate: Option<f64>, random: f64) -> Arc<Self> {
        let rate_or_0 = rate.unwrap_or(0.0);
        Arc::new(Self {
            bucket: rate.map(|r| Mutex::new((r, Instant::now()))),
            rate: rate_or_0,
            burst: rate_or_0,
            random,
            rng: Mutex::new(0x9e37_79b9_7f4a_7c15),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn chance(&self) -> f64 {
        let mut s = self.rng.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn call(&self) -> Result<(), ApiError> {
        tokio::time::sleep(LATENCY).await;
        let admitted = match &self.bucket {
            None => true,
            Some(b) => {
                let mut b = b.lock().unwrap();
                let now = Instant::now();
                b.0 = (b.0 + (now - b.1).as_secs_f64() * self.rate).min(self.burst);
                b.1 = now;
                if b.0 >= 1.0 {
                    b.0 -= 1.0;
                    true
                } else {
                    false
                }
            }
        };
        if admitted && self.chance() >= self.random {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::service(
                "ThrottlingException",
                400,
                "Rate exceeded",
            ))
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// `callers` loops calling through `pacer` for `secs`; the service's
/// accepted and refused calls after the first `warmup` seconds.
async fn drive(
    pacer: Option<Arc<Pacer>>,
    service: Arc<Service>,
    callers: usize,
    warmup: u64,
    secs: u64,
) -> (f64, f64) {
    drive_with_pause(pacer, service, callers, Duration::ZERO, warmup, secs).await
}

/// The same, each caller pausing `pause` after each call (fewer calls).
async fn drive_with_pause(
    pacer: Option<Arc<Pacer>>,
    service: Arc<Service>,
    callers: usize,
    pause: Duration,
    warmup: u64,
    secs: u64,
) -> (f64, f64) {
    let end = Instant::now() + Duration::from_secs(warmup + secs);
    let mut loops = Vec::new();
    for _ in 0..callers {
        let (pacer, service) = (pacer.clone(), service.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < end {
                let _ = match &pacer {
                    Some(p) => p.call(OP, service.call()).await,
                    None => service.call().await,
                };
                tokio::time::sleep(pause).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let (a0, r0) = service.counts();
    for l in loops {
        l.await.unwrap();
    }
    let (a1, r1) = service.counts();
    let (accepted, refused) = ((a1 - a0) as f64, (r1 - r0) as f64);
    (
        accepted / secs as f64,
        refused / (accepted + refused).max(1.0),
    )
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_is_matched_within_ten_percent_with_few_refusals() {
    let service = Service::new(Some(200.0), 0.0);
    let (rate, refused) = drive(Some(Arc::new(Pacer::new())), service, 64, 10, 60).await;
    assert!((180.0..=220.0).contains(&rate), "accepted {rate:.1}/s");
    assert!(refused < 0.05, "refused {:.1}% of calls", refused * 100.0);
}

#[tokio::test(start_paused = true)]
async fn control_without_the_pacer_most_calls_are_refused() {
    let service = Service::new(Some(200.0), 0.0);
    let (_, refused) = drive(None, service, 64, 10, 20).await;
    assert!(refused > 0.5, "refused {:.1}% of calls", refused * 100.0);
}

#[tokio::test(start_paused = true)]
async fn throttling_independent_of_the_rate_does_not_slow_calls_down() {
    let unpaced = drive(None, Service::new(None, 0.3), 64, 2, 20).await.0;
    let pacer = Arc::new(Pacer::new());
    let paced = drive(Some(pacer.clone()), Service::new(None, 0.3), 64, 2, 20)
        .await
        .0;
    assert!(
        paced >= 0.9 * unpaced,
        "paced {paced:.0}/s, unpaced {unpaced:.0}/s"
    );
    let cuts = pacer.lane(OP).unwrap().cuts;
    assert!(
        cuts >= 1,
        "the first throttles are taken for congestion, then undone"
    );
    assert_eq!(pacer.limit(OP), None, "not paced in the end");
}

#[tokio::test(start_paused = true)]
async fn a_few_calls_throttled_at_random_are_not_slowed_either() {
    // About 40 calls a second (as a queue's deletes in batches of ten):
    // windows of few calls, noisy shares.
    let pause = Duration::from_millis(200);
    let unpaced = drive_with_pause(None, Service::new(None, 0.3), 8, pause, 2, 60)
        .await
        .0;
    let paced = drive_with_pause(
        Some(Arc::new(Pacer::new())),
        Service::new(None, 0.3),
        8,
        pause,
        2,
        60,
    )
    .await
    .0;
    assert!(
        paced >= 0.9 * unpaced,
        "paced {paced:.1}/s, unpaced {unpaced:.1}/s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bucket_under_random_throttling_is_still_found() {
    // 30% throttled at random on top of a 200/s bucket: the bucket is met
    // (its 200/s, less the random 30%).
    let service = Service::new(Some(200.0), 0.3);
    let (rate, refused) = drive(Some(Arc::new(Pacer::new())), service, 64, 10, 60).await;
    assert!((126.0..=154.0).contains(&rate), "accepted {rate:.1}/s");
    // 30% at random hides a small excess in the noise of a window's
    // calls (a 3-sigma threshold): a little more is refused than alone.
    assert!(
        refused < 0.3 + 0.07,
        "refused {:.1}% of calls",
        refused * 100.0
    );
}

#[tokio::test(start_paused = true)]
async fn keepalive_calls_and_polls_are_never_paced() {
    let pacer = Pacer::new();
    {
        let mut reports = pacer.lane(OP).unwrap();
        reports.limit = Some(1.0);
        reports.next = Instant::now() + Duration::from_secs(10);
    }
    for op in [
        Operation::SendTaskHeartbeat,
        Operation::ChangeMessageVisibilityBatch,
        Operation::SendDurableExecutionCallbackHeartbeat,
        Operation::ReceiveMessage,
        Operation::GetActivityTask,
    ] {
        let start = Instant::now();
        pacer.call(op, async { Ok(()) }).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "{op}");
    }
    // Control: the report waits for its turn.
    let start = Instant::now();
    pacer.call(OP, async { Ok(()) }).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(10));
}
