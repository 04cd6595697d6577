//! Every built-in handler kind's params: arbitrary JSON or TOML through
//! `Registry::build`, as a binding's `[activity.params]` reaches it (the
//! `config` target mostly stops at the table's shape, before a handler's
//! own checks).
//!
//! Input: `KIND \n PARAMS`, where KIND names a built-in kind (`exec`,
//! `http`, `echo`) and PARAMS is a JSON object, or else a TOML table.
//! Checked on every input: building never panics; an error names a param
//! the kind lists in its `params_help` (`env.NAME` and `command[2]` name
//! `env` and `command`), or the unknown param it is about, or is `.` (the
//! table itself: a required param is missing).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sfn_worker_core::Registry;
use sfn_worker_core::handler::ParamsError;

static BUILTINS: LazyLock<Registry> = LazyLock::new(sfn_worker_handlers::builtins);

/// The params a kind lists, one per line as `name: type ...`.
fn listed(kind: &str) -> Vec<&'static str> {
    BUILTINS
        .kinds()
        .find(|k| k.kind == kind)
        .map(|k| {
            k.params_help
                .lines()
                .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `path` is inside one of `params` (`env.A`, `command[0]`).
fn names_one_of(path: &str, params: &[&str]) -> bool {
    let head = path.split(['.', '[']).next().unwrap_or_default();
    params.contains(&head)
}

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 is read as U+FFFD, not skipped: a byte flipped above
    // 0x7f then becomes a multi-byte character, so slicing text by bytes
    // (an env_inherit entry ending in "é" once panicked) is found in
    // seconds rather than after minutes of waiting for valid UTF-8.
    let text = String::from_utf8_lossy(data);
    let Some((kind, params)) = text.split_once('\n') else {
        return;
    };
    if !BUILTINS.kinds().any(|k| k.kind == kind) {
        return;
    }
    let Ok(params) = serde_json::from_str::<serde_json::Value>(params)
        .or_else(|_| toml::from_str::<serde_json::Value>(params))
    else {
        return;
    };
    // A table, as `[activity.params]` is. (serde also reads a struct from
    // a list, by position: `params = [["true"], {}, [], "/", 5, 9]` builds
    // an exec, and its errors say `[0]`, not a name. That is the registry's
    // decoding, not a handler's, and is left out here.)
    if !params.is_object() {
        return;
    }
    let fields = listed(kind);
    assert!(!fields.is_empty(), "{kind} lists no params");
    match BUILTINS.build(kind, &params) {
        Ok(_) => {}
        Err(ParamsError::Invalid { path, message }) => assert!(
            path == "."
                || names_one_of(&path, &fields)
                || message.starts_with(&format!("unknown field `{path}`")),
            "{kind}: an error naming no param: {path}: {message}"
        ),
        Err(ParamsError::Rejected(e)) => assert!(
            names_one_of(&e.param, &fields) && !e.message.is_empty(),
            "{kind}: a refusal naming no param: {e}"
        ),
        Err(e) => panic!("{kind}: unexpected error: {e}"),
    }
});
