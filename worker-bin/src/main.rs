//! The `sfn-worker` binary: the daemon with the built-in handlers.

fn main() -> std::process::ExitCode {
    sfn_worker::main(|_| {})
}
