//! Built-in handler kinds for sfn-worker.
//!
//! - `exec`: run a command (argv, never a shell) with the task input on stdin.
//! - `http`: send the task input as JSON to an HTTP endpoint.
//! - `echo`: return the input, optionally merged with `params.add`.
//!
//! [`register`] adds them all to a registry; the `sfn-worker` binary is
//! exactly that plus the daemon.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod echo;
pub mod exec;
pub mod http;

use sfn_worker_core::Registry;

/// Add every built-in kind to `registry`.
pub fn register(registry: &mut Registry) -> &mut Registry {
    registry
        .factory(exec::Exec)
        .factory(http::Http)
        .factory(echo::Echo)
}

/// A registry holding only the built-in kinds.
pub fn builtins() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}

#[cfg(test)]
mod tests {
    use sfn_worker_core::HandlerFactory;

    /// The param names a kind's `params_help` lists (`name: type ...`).
    fn help_names(help: &str) -> Vec<String> {
        let mut names: Vec<String> = help
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(name, _)| name.to_owned())
            .collect();
        names.sort();
        names
    }

    /// The params its type accepts, from the type's JSON schema.
    fn schema_names(schema: schemars::Schema) -> Vec<String> {
        let v = serde_json::to_value(schema).unwrap_or_default();
        let mut names: Vec<String> = v["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// `sfn-worker handlers` prints each kind's `params_help`: it lists
    /// exactly the params the kind's type accepts, so the two cannot drift.
    #[test]
    fn every_kinds_help_lists_exactly_its_params() {
        let kinds = [
            (
                crate::exec::Exec.params_help(),
                schemars::schema_for!(crate::exec::ExecParams),
            ),
            (
                crate::http::Http.params_help(),
                schemars::schema_for!(crate::http::HttpParams),
            ),
            (
                crate::echo::Echo.params_help(),
                schemars::schema_for!(crate::echo::EchoParams),
            ),
        ];
        for (help, schema) in kinds {
            let names = schema_names(schema);
            assert!(!names.is_empty());
            assert_eq!(help_names(help), names, "{help}");
        }
        // The control: a help text missing a param is caught.
        let exec_names = schema_names(schemars::schema_for!(crate::exec::ExecParams));
        let partial = crate::exec::Exec
            .params_help()
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(help_names(&partial), exec_names);
    }
}
