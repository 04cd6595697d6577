//! A broken configuration gives the promised message, from `check` and `run`.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::*;

fn sfn_worker(args: &[&str]) -> (i32, String, String) {
    sfn_worker_with_env(args, &[])
}

fn sfn_worker_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sfn-worker"))
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BROKEN: &str = r#"
[worker]
max_concurrency = 0
shutdown_grace = 30

[[activity]]
arn = "arn:aws:states:us-east-1:000000000000:activity:resize"
handler = "exec"
pollers = 4
concurrency = 2
[activity.params]
command = ["./resize.sh"]
"#;

#[test]
fn check_and_run_name_the_file_the_field_and_what_was_expected() {
    let dir = scratch_dir("broken");
    let path = dir.join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let p = path.to_str().unwrap();
    for cmd in ["check", "run"] {
        let (code, _, stderr) = sfn_worker(&[cmd, "--config", p]);
        assert_eq!(code, 2, "{cmd}: {stderr}");
        assert!(stderr.contains(&format!("{p}: worker.max_concurrency: invalid value signed int `0`, expected a nonzero usize")), "{cmd}: {stderr}");
    }
    std::fs::write(&path, BROKEN.replace("max_concurrency = 0\n", "")).unwrap();
    for cmd in ["check", "run"] {
        let (code, _, stderr) = sfn_worker(&[cmd, "--config", p]);
        assert_eq!(code, 2, "{cmd}: {stderr}");
        assert!(stderr.contains(&format!("{p}: worker.shutdown_grace: unknown field `shutdown_grace`; expected one of: max_concurrency, shutdown_grace_secs")), "{cmd}: {stderr}");
    }
    // Once it parses, the semantic checks speak the same way.
    std::fs::write(
        &path,
        BROKEN.replace("max_concurrency = 0\nshutdown_grace = 30", ""),
    )
    .unwrap();
    let (code, _, stderr) = sfn_worker(&["check", "--config", p]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!(
            "{p}: activity[0].pollers: expected at most concurrency (2), got 4"
        )),
        "{stderr}"
    );
}

#[test]
fn check_prints_the_resolved_plan() {
    let dir = scratch_dir("good");
    let path = dir.join("good.toml");
    std::fs::write(
        &path,
        BROKEN
            .replace("max_concurrency = 0\nshutdown_grace = 30", "")
            .replace("pollers = 4", ""),
    )
    .unwrap();
    let (code, stdout, stderr) = sfn_worker(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("[[activity]] resize"), "{stdout}");
    assert!(stdout.contains("pollers        = 2"), "{stdout}");
    assert!(
        stdout.contains("termination grace period of at least 100 s"),
        "{stdout}"
    );
}

#[test]
fn invoke_runs_a_handler_locally() {
    let dir = scratch_dir("invoke");
    let input = dir.join("in.json");
    std::fs::write(&input, r#"{"a": 1}"#).unwrap();
    let (code, stdout, _) = sfn_worker(&[
        "invoke",
        "echo",
        "--params",
        r#"{"add":{"b":2}}"#,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!((code, stdout.trim()), (0, r#"{"a":1,"b":2}"#));
    let (code, _, stderr) = sfn_worker(&[
        "invoke",
        "exec",
        "--params",
        r#"{"command":["sh","-c","exit 3"]}"#,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: Exec.NonZeroExit") && stderr.contains("cause: exit code 3"),
        "{stderr}"
    );
}

#[test]
fn environment_overrides_win_over_the_file_and_bad_ones_are_named() {
    let dir = scratch_dir("env");
    let path = dir.join("env.toml");
    std::fs::write(
        &path,
        BROKEN
            .replace(
                "max_concurrency = 0\nshutdown_grace = 30",
                "max_concurrency = 8",
            )
            .replace("pollers = 4", ""),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let var = "SFN_WORKER_WORKER__MAX_CONCURRENCY";
    let (code, stdout, stderr) = sfn_worker_with_env(&["check", "--config", p], &[(var, "7")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("max_concurrency     = 7"), "{stdout}");
    let (code, _, stderr) = sfn_worker_with_env(&["check", "--config", p], &[(var, "lots")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!(
            "environment variable {var}: worker.max_concurrency: invalid type"
        )),
        "{stderr}"
    );
}

#[test]
fn check_masks_secret_values() {
    let dir = scratch_dir("secrets");
    let path = dir.join("secrets.toml");
    std::fs::write(
        &path,
        r#"
[[activity]]
arn = "arn:aws:states:us-east-1:000000000000:activity:price"
handler = "http"
[activity.params]
url = "https://svc:pa55word@api.internal/price"
headers = { Authorization = "Bearer abc123", X-Key = { env = "HOME" } }

[[activity]]
arn = "arn:aws:states:us-east-1:000000000000:activity:resize"
handler = "exec"
[activity.params]
command = ["./resize.sh"]
env = { DB_PASSWORD = "xyzzy" }
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = sfn_worker(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for secret in ["abc123", "pa55word", "xyzzy"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    // What is not secret is still shown, so the check stays useful.
    for shown in [
        "Authorization",
        r#""env":"HOME""#,
        "./resize.sh",
        "DB_PASSWORD",
        "***",
    ] {
        assert!(stdout.contains(shown), "{shown} missing:\n{stdout}");
    }
}

#[test]
fn exec_commands_do_not_inherit_the_workers_secrets() {
    let dir = scratch_dir("exec-env");
    let input = dir.join("in.json");
    std::fs::write(&input, "{}").unwrap();
    let script = r#"printf '{"config":"%s","token":"%s","has_path":%s}' "$SFN_WORKER_CONFIG_TOML" "$API_TOKEN" "$([ -n "$PATH" ] && echo true || echo false)""#;
    let run = |extra: serde_json::Value| {
        let mut params = serde_json::json!({ "command": ["sh", "-c", script] });
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (code, stdout, stderr) = sfn_worker_with_env(
            &[
                "invoke",
                "exec",
                "--params",
                &params.to_string(),
                "--input",
                input.to_str().unwrap(),
            ],
            &[
                ("SFN_WORKER_CONFIG_TOML", "[aws] secret"),
                ("API_TOKEN", "t0ken"),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    assert_eq!(
        run(serde_json::json!({})),
        serde_json::json!({ "config": "", "token": "", "has_path": true })
    );
    // The control: named in env_inherit, a variable does arrive.
    assert_eq!(
        run(serde_json::json!({ "env_inherit": ["PATH", "API_*"] })),
        serde_json::json!({ "config": "", "token": "t0ken", "has_path": true })
    );
}

const WORKFLOWS_ONLY: &str = r#"
[aws]
region = "us-east-1"

[workflows]
execution_name_prefix = "orders"
[workflows.state_machines]
orders = "arn:aws:states:us-east-1:000000000000:stateMachine:orders"
refunds = "arn:aws:states:us-east-1:000000000000:stateMachine:refunds:prod"
"#;

#[test]
fn check_validates_and_shows_workflows() {
    let dir = scratch_dir("workflows");
    let path = dir.join("workflows.toml");
    let p = path.to_str().unwrap();
    // Only [workflows]: valid for the workflow commands, refused by run.
    std::fs::write(&path, WORKFLOWS_ONLY).unwrap();
    let (code, stdout, stderr) = sfn_worker(&["check", "--config", p]);
    assert_eq!(code, 0, "{stderr}");
    for shown in [
        "execution_name_prefix = orders (names: orders-<uuid>)",
        "max_retries           = 3",
        "request_timeout_secs  = 10",
        "state_machines        = 2",
        "orders  -> arn:aws:states:us-east-1:000000000000:stateMachine:orders",
        "refunds -> arn:aws:states:us-east-1:000000000000:stateMachine:refunds:prod",
        "`run` refuses it",
    ] {
        assert!(stdout.contains(shown), "{shown:?} missing:\n{stdout}");
    }
    let (code, _, stderr) = sfn_worker(&["run", "--config", p]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{p}: activity: expected at least one [[activity]] or [[queue]] binding"
        )),
        "{stderr}"
    );
    // The control: no bindings and no workflows is refused by check too.
    std::fs::write(&path, "[aws]\nregion = \"us-east-1\"\n").unwrap();
    let (code, _, stderr) = sfn_worker(&["check", "--config", p]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothing to serve"), "{stderr}");

    // Each mistake is named by its field and the file.
    for (from, to, expected) in [
        (
            "stateMachine:orders\"",
            "activity:orders\"",
            "workflows.state_machines.orders: expected a state machine ARN like arn:aws:states:us-east-1:123456789012:stateMachine:NAME",
        ),
        (
            "execution_name_prefix = \"orders\"",
            "execution_name_prefix = \"my orders\"",
            "workflows.execution_name_prefix: expected 1 to 43 characters",
        ),
        (
            "execution_name_prefix = \"orders\"",
            "max_retry = 2",
            "workflows.max_retry: unknown field `max_retry`; expected one of: execution_name_prefix, max_retries, request_timeout_secs, state_machines",
        ),
        (
            "execution_name_prefix = \"orders\"",
            "request_timeout_secs = 0",
            "workflows.request_timeout_secs: invalid value signed int `0`, expected a nonzero u64",
        ),
    ] {
        let body = WORKFLOWS_ONLY.replace(from, to);
        assert_ne!(body, WORKFLOWS_ONLY);
        std::fs::write(&path, body).unwrap();
        let (code, _, stderr) = sfn_worker(&["check", "--config", p]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!("{p}: {expected}")),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}
