//! The configuration loader: TOML text to a validated plan, as
//! `sfn-worker run` loads `SFN_WORKER_CONFIG_TOML`.
//!
//! Checked on every input: loading never panics; an error names where the
//! configuration came from; a plan that loads has no zero limits and no
//! duration that overflows the clock (a worker would panic on it later).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

fn fits(d: Option<Duration>) -> bool {
    d.is_none_or(|d| Instant::now().checked_add(d).is_some())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sfn_worker::fuzz_config(text) {
        Err(message) => assert!(
            message.starts_with("SFN_WORKER_CONFIG_TOML"),
            "an error that does not say where: {message}"
        ),
        Ok(plan) => {
            for a in plan.activities() {
                let b = &a.binding;
                assert!(b.concurrency > 0 && a.pollers > 0 && a.pollers <= b.concurrency);
                assert!(fits(b.heartbeat) && fits(b.timeout));
            }
            for q in plan.queues() {
                let b = &q.binding;
                assert!(b.concurrency > 0 && q.receivers > 0);
                assert!(fits(b.heartbeat) && fits(b.timeout) && fits(Some(q.visibility * 3)));
            }
        }
    }
});
