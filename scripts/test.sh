#!/usr/bin/env bash
# The whole test suite: unit and behaviour tests, and the LocalStack suites
# (with moto's DynamoDB for the task ledger) that drive the real sfn-worker binary against LocalStack (feature
# sfn-worker/_localstack; installed and started here unless one
# already answers, or LOCALSTACK_ENDPOINT points at yours). Stops what it
# started. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# promtool validates the /metrics exposition. Installed where we may (root
# with apt, as on CI); elsewhere that one check says it was skipped.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing promtool (Debian package prometheus)" >&2
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  else
    echo "[test] WARNING: promtool not found; the /metrics format check will be skipped" >&2
  fi
fi

# The durable-callback suite runs AWS's local durable-execution runner.
DURABLE_RUNNER_PYTHON=$(scripts/durable-runner.sh install)
export DURABLE_RUNNER_PYTHON
# The task-ledger suite runs DynamoDB in moto's server mode.
MOTO_SERVER=$(scripts/moto.sh install)
export MOTO_SERVER

exec scripts/localstack.sh run cargo test --workspace --locked --features sfn-worker/_localstack,sfn-worker/otlp,embedded-worker/localstack "$@"
