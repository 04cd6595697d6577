//! The worker as PID 1, as in a container without an init: it reaps what
//! its handlers leave behind, and passes SIGTERM on to the worker.
//!
//! Runs the real binary as PID 1 of a new PID namespace (`unshare`, as root
//! or in an unprivileged user namespace) against LocalStack. The control
//! case is the same run with the init turned off (`SFN_WORKER_INIT=0`),
//! where the zombies pile up.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// An `unshare` prefix that works here, if any.
fn unshare() -> Option<Vec<&'static str>> {
    let variants: [&[&'static str]; 2] = [
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        &[
            "unshare",
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
        ],
    ];
    variants.into_iter().map(<[_]>::to_vec).find(|v| {
        Command::new(v[0])
            .args(&v[1..])
            .arg("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn as_pid_one_it_reaps_what_handlers_leave_behind_and_passes_sigterm_on() {
    let Some(wrapper) = unshare() else {
        // CI runs as root, where unshare works: there a skip would hide a
        // regression, so it fails instead.
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare cannot make a PID namespace on CI; this test must run there"
        );
        eprintln!(
            "SKIPPED: unshare cannot make a PID namespace here (needs root or user namespaces)"
        );
        return;
    };
    let sfn = sfn().await;
    for init in ["1", "0"] {
        let arn = create_activity(&sfn, &unique("pid1")).await;
        let machine =
            create_state_machine(&sfn, &unique("pid1"), task_machine(&arn, json!({}))).await;
        let dir = scratch_dir("pid1");
        // Each task leaves a sleep behind, which the worker terminates when
        // the command exits; its zombie is PID 1's to reap.
        let binding = format!(
            "[[activity]]\nname = \"pid1\"\narn = \"{arn}\"\nhandler = \"exec\"\n[activity.params]\ncommand = [\"sh\", \"-c\", \"sleep 30 & echo '{{\\\"ok\\\":true}}'\"]\n"
        );
        // `SFN_WORKER_INIT` unset: PID 1 turns the init on by itself.
        let env: &[(&str, &str)] = if init == "0" {
            &[("SFN_WORKER_INIT", "0")]
        } else {
            &[]
        };
        let daemon = Daemon::start_with(&dir, "pid1", "", &binding, &wrapper, env);
        let pid_one = Daemon::children_of(daemon.child.id())
            .first()
            .map(|(p, _)| *p)
            .expect("the namespace's PID 1");
        for _ in 0..3 {
            let execution = start(&sfn, &machine, json!({})).await;
            let ended = wait_ended(&sfn, &execution, Duration::from_secs(60)).await;
            assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
        }
        let zombies = || {
            Daemon::children_of(pid_one)
                .iter()
                .filter(|(_, state)| *state == 'Z')
                .count()
        };
        if init == "1" {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(zombies(), 0, "zombies under the init:\n{}", daemon.logs());
            // SIGTERM to PID 1 reaches the worker: it starts draining.
            assert!(
                Command::new("kill")
                    .args(["-TERM", &pid_one.to_string()])
                    .status()
                    .unwrap()
                    .success()
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while http_get(daemon.port, "/readyz").map(|r| r.0) != Some(503) {
                assert!(
                    Instant::now() < deadline,
                    "SIGTERM did not reach the worker:\n{}",
                    daemon.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            // The control: without the init nothing reaps them.
            let deadline = Instant::now() + Duration::from_secs(10);
            while zombies() < 3 {
                assert!(
                    Instant::now() < deadline,
                    "expected 3 zombies without the init, saw {}",
                    zombies()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
