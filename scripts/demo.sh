#!/usr/bin/env bash
# The demo: sfn-worker serving an example state machine end to end, on this
# machine, against LocalStack (installed and started here unless
# LOCALSTACK_ENDPOINT points at one you run). Stops what it started.
#
#   scripts/demo.sh [N]      N executions per source (default 30), plus a long one each and a Map
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building sfn-worker and the demo driver"
cargo build --quiet -p sfn-worker -p sfn-worker-demo
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# The durable-function callback runs on AWS's local durable-execution runner.
DURABLE_RUNNER_PYTHON=$(scripts/durable-runner.sh install)
export DURABLE_RUNNER_PYTHON
exec scripts/localstack.sh run "$target_dir/debug/sfn-worker-demo" "$target_dir/debug/sfn-worker" "${1:-30}"
