//! `sfn-worker handlers`: the kinds this binary knows.

use std::process::ExitCode;

use sfn_worker_core::{Registry, error_names};

pub(crate) fn list(registry: &Registry) -> ExitCode {
    let width = registry.kinds().map(|k| k.kind.len()).max().unwrap_or(0);
    let pad = " ".repeat(width + 1);
    for kind in registry.kinds() {
        let description = if kind.description.is_empty() {
            "(no description)"
        } else {
            &kind.description
        };
        println!("{:<width$} {description}", kind.kind);
        if kind.params_help.is_empty() {
            println!("{pad}params: none");
        } else {
            println!("{pad}params:");
            for line in kind.params_help.lines() {
                println!("{pad}  {}", line.trim());
            }
        }
    }
    println!();
    println!(
        "Errors the worker itself reports: {}",
        error_names::ALL.join(", ")
    );
    ExitCode::SUCCESS
}
