#!/usr/bin/env bash
# AWS's local durable-execution runner (PyPI aws-durable-execution-sdk-python-testing)
# for the durable-callback tests and the demo.
#
#   scripts/durable-runner.sh install   install it (Python 3.13 venv) if needed;
#                                       print the venv's python
#
# The tests and the demo start examples/durable-function/runner.py with that python, one
# runner per test on a port of its own (DURABLE_RUNNER_PYTHON tells them
# which python; scripts/test.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="${SFN_WORKER_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sfn-worker}"
VENV="$STATE_DIR/durable-runner-venv"
# The versions the tests were written against.
PACKAGES=(aws-durable-execution-sdk-python-testing==1.4.0 aws-durable-execution-sdk-python==3.0.0 boto3)

log() { printf '[durable-runner] %s\n' "$*" >&2; }

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import aws_durable_execution_sdk_python_testing, boto3' 2>/dev/null; then
    echo "$VENV/bin/python"; return 0
  fi
  local py
  py=$(scripts/localstack.sh python313) || { log "needs Python 3.13 (pyenv install 3.13.0)"; exit 1; }
  log "installing ${PACKAGES[*]} into $VENV"
  mkdir -p "$STATE_DIR"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install -q "${PACKAGES[@]}" >&2
  echo "$VENV/bin/python"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
