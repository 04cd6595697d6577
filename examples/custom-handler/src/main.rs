//! `orders-worker`: the whole sfn-worker daemon (CLI, config, metrics,
//! graceful shutdown) with two handlers of our own next to the built-ins.
//!
//!     cargo run -p orders-worker -- handlers
//!     cargo run -p orders-worker -- invoke price-order --input order.json
//!     cargo run -p orders-worker -- run --config worker.toml

mod handlers;

fn main() -> std::process::ExitCode {
    sfn_worker::main(|registry| {
        registry.handler("price-order", handlers::price_order);
        registry.handler("resize-images", handlers::resize_images);
        registry.describe(
            "price-order",
            "Prices an order; fails with Orders.EmptyOrder or Orders.UnknownSku.",
        );
        registry.describe(
            "resize-images",
            "Resizes a batch of images, heartbeating after each one.",
        );
    })
}
