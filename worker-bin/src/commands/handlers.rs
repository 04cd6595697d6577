//! `sfn-worker handlers`: the kinds this binary knows.

use std::process::ExitCode;

use sfn_worker_core::{Registry, error_names};

pub(crate) fn list(registry: &Registry) -> ExitCode {
    for kind in registry.kinds() {
        let description = if kind.description.is_empty() {
            "(no description)"
        } else {
            &kind.description
        };
        println!("{:<10} {description}", kind.kind);
        if kind.params_help.is_empty() {
            println!("           params: none");
        } else {
            println!("           params:");
            for line in kind.params_help.lines() {
                println!("             {}", line.trim());
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
