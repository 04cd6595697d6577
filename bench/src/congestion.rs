//! Congestion as AWS enforces it, next to the random faults: a token bucket
//! per API operation (`--bucket SendTaskSuccess=200`, or a prefix:
//! `--bucket 'SendTask*=200:400'`, one bucket for each operation it
//! matches). A call that finds its bucket empty is answered as the service
//! answers a throttled call (`ThrottlingException`, SQS `RequestThrottled`),
//! and takes nothing from the bucket. Unlike `--throttle-rate`, how many
//! calls are refused depends on how fast the client calls: a client that
//! slows down below the refill rate is never refused.
//!
//! And the bill: every call counted by operation, with how many were
//! throttled and how many answered by an injected fault (`GET /stats`,
//! `"calls"`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// One `--bucket` flag: which operations, how fast the bucket refills
/// (calls per second), and how many calls it holds (its burst; default one
/// second of refill).
#[derive(Debug, Clone)]
pub(crate) struct BucketSpec {
    /// An operation name, or a prefix ending in `*`.
    pub pattern: String,
    pub rate: f64,
    pub burst: f64,
}

impl std::str::FromStr for BucketSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (pattern, numbers) = s
            .split_once('=')
            .ok_or_else(|| format!("--bucket {s:?}: expected OPERATION=RATE[:BURST]"))?;
        let (rate, burst) = match numbers.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (numbers, None),
        };
        let number = |what: &str, v: &str| match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(format!(
                "--bucket {s:?}: {what} must be a positive number, not {v:?}"
            )),
        };
        let rate = number("RATE", rate)?;
        let burst = match burst {
            Some(b) => number("BURST", b)?,
            None => rate,
        };
        if pattern.is_empty() {
            return Err(format!("--bucket {s:?}: no operation name"));
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            rate,
            burst,
        })
    }
}

impl BucketSpec {
    fn matches(&self, operation: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => operation.starts_with(prefix),
            None => operation == self.pattern,
        }
    }
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

/// Per operation: calls, throttled answers (bucket or random), answers
/// replaced by any injected fault.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct CallCount {
    pub calls: u64,
    pub throttled: u64,
    pub faulted: u64,
}

#[derive(Default)]
pub(crate) struct Calls {
    specs: Vec<BucketSpec>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    buckets: HashMap<String, Bucket>,
    counts: HashMap<String, CallCount>,
}

impl Calls {
    pub fn new(specs: Vec<BucketSpec>) -> Self {
        Self {
            specs,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a call and take a token from its bucket: false when the bucket
    /// is empty (the call is to be answered throttled).
    pub fn admit(&self, operation: &str) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let State { buckets, counts } = &mut *state;
        let count = match counts.get_mut(operation) {
            Some(c) => c,
            None => counts.entry(operation.to_owned()).or_default(),
        };
        count.calls += 1;
        let bucket = match buckets.get_mut(operation) {
            Some(b) => Some(b),
            None => self
                .specs
                .iter()
                .find(|s| s.matches(operation))
                .map(|spec| {
                    buckets.entry(operation.to_owned()).or_insert(Bucket {
                        rate: spec.rate,
                        burst: spec.burst,
                        tokens: spec.burst,
                        refilled: now,
                    })
                }),
        };
        let Some(bucket) = bucket else {
            return true;
        };
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(bucket.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            count.throttled += 1;
            count.faulted += 1;
            false
        }
    }

    /// A call answered by an injected fault (`throttled`: a throttling code).
    pub fn faulted(&self, operation: &str, throttled: bool) {
        let mut state = self.lock();
        if let Some(c) = state.counts.get_mut(operation) {
            c.faulted += 1;
            c.throttled += u64::from(throttled);
        }
    }

    pub fn counts(&self) -> serde_json::Value {
        let state = self.lock();
        let mut ops: Vec<_> = state.counts.iter().collect();
        ops.sort_by(|a, b| a.0.cmp(b.0));
        serde_json::Value::Object(
            ops.into_iter()
                .map(|(op, c)| (op.clone(), serde_json::json!(c)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_once_empty_and_only_its_operations() {
        let calls = Calls::new(vec!["SendTask*=1:3".parse().unwrap()]);
        let admitted = (0..5).filter(|_| calls.admit("SendTaskSuccess")).count();
        assert_eq!(admitted, 3, "the burst, then refused until it refills");
        assert!(calls.admit("SendTaskHeartbeat"), "a bucket of its own");
        assert!((0..100).all(|_| calls.admit("ReceiveMessage")));
        let counts = calls.counts();
        assert_eq!(counts["SendTaskSuccess"]["calls"], 5);
        assert_eq!(counts["SendTaskSuccess"]["throttled"], 2);
        assert_eq!(counts["ReceiveMessage"]["throttled"], 0);
    }

    #[test]
    fn bad_flags_say_what_was_expected() {
        for bad in ["SendTaskSuccess", "X=0", "X=abc", "=5", "X=5:-1"] {
            let err = bad.parse::<BucketSpec>().unwrap_err();
            assert!(err.contains("--bucket"), "{bad}: {err}");
        }
        let spec: BucketSpec = "ReceiveMessage=50".parse().unwrap();
        assert_eq!((spec.rate, spec.burst), (50.0, 50.0));
    }
}
