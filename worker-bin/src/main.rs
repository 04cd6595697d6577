//! The `sfn-worker` binary: the daemon with the built-in handlers.

// Feature `mimalloc`: about 20% less CPU per task than glibc's malloc, for
// about 13 MiB more resident memory at idle (BENCHMARKS.md). Off by default
// so an idle worker stays under 20 MiB.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sfn_worker::main(|_| {})
}
