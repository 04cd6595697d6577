//! `orders-worker`: the whole sfn-worker daemon (CLI, config, metrics,
//! graceful shutdown) with two handlers of our own next to the built-ins.
//!
//!     cargo run -p orders-worker -- handlers
//!     cargo run -p orders-worker -- invoke price-order --input order.json
//!     cargo run -p orders-worker -- run --config worker.toml

mod handlers;

fn main() -> std::process::ExitCode {
    sfn_worker::main(handlers::register)
}
