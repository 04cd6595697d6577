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

# The simulation's defect patches (scripts/sim-controls.py puts each back
# and expects it found) must still apply: a runner change that moves their
# context fails here, in seconds, instead of as "not found" after the
# controls' builds.
for patch in worker-core/tests/simulation/defects/*.patch; do
  if ! git apply --check "$patch" 2>/dev/null; then
    echo "[test] $patch no longer applies to this tree: rebase it onto the code it puts a defect back into" >&2
    exit 1
  fi
done

exec scripts/localstack.sh run cargo test --workspace --locked --features sfn-worker/_localstack,sfn-worker/otlp,embedded-worker/localstack "$@"
