#!/usr/bin/env bash
# The demo: sfn-worker serving an example state machine end to end, on this
# machine, against LocalStack (installed and started here unless
# LOCALSTACK_ENDPOINT points at one you run). Stops what it started.
#
#   scripts/demo.sh [N]      N executions per source (default 30), plus a long one each and a Map
set -euo pipefail
cd "$(dirname "$0")/.."

started_localstack=0
if [ -z "${LOCALSTACK_ENDPOINT:-}" ] && ! scripts/localstack.sh status; then
  scripts/localstack.sh start
  started_localstack=1
fi
# (An if, not `[ ] &&`: the trap's status would become the script's.)
cleanup() {
  local status=$?
  if [ "$started_localstack" = 1 ]; then scripts/localstack.sh stop; fi
  exit "$status"
}
trap cleanup EXIT

export AWS_ENDPOINT_URL="${LOCALSTACK_ENDPOINT:-http://127.0.0.1:${LOCALSTACK_PORT:-4566}}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

echo "==> building sfn-worker and the demo driver"
cargo build --quiet -p sfn-worker -p sfn-worker-demo
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/sfn-worker-demo" "$target_dir/debug/sfn-worker" "${1:-30}"
