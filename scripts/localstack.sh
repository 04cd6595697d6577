#!/usr/bin/env bash
# Install, start, stop and check a LocalStack on this host, without Docker.
#
#   scripts/localstack.sh start    install if needed, start, wait until healthy
#   scripts/localstack.sh stop     stop the instance this script started
#   scripts/localstack.sh status   exit 0 if an endpoint answers
#   scripts/localstack.sh env      print the environment the tests and demo use
#   scripts/localstack.sh run CMD  run CMD with LocalStack up and that environment
#                                  set; stop LocalStack afterwards if this started it
#
# If LOCALSTACK_ENDPOINT is set (for example to a LocalStack container you
# already run), nothing is installed or started: that endpoint is used as is.
#
# Why the pins: localstack-core 2026.3.0 needs Python 3.13 and fails at start-up
# with newer cbor2 / pyOpenSSL / cryptography / service-identity.
set -euo pipefail

LOCALSTACK_VERSION="2026.3.0"
PORT="${LOCALSTACK_PORT:-4566}"
STATE_DIR="${SFN_WORKER_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sfn-worker}"
VENV="$STATE_DIR/localstack-venv"
PID_FILE="$STATE_DIR/localstack.pid"
LOG_FILE="$STATE_DIR/localstack.log"
ENDPOINT="${LOCALSTACK_ENDPOINT:-http://127.0.0.1:$PORT}"

log() { printf '[localstack] %s\n' "$*" >&2; }

healthy() {
  curl -fsS --max-time 2 "$ENDPOINT/_localstack/health" >/dev/null 2>&1
}

find_python313() {
  local candidates=()
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)/versions/3.13.0/bin/python3.13")
    for d in "$(pyenv root)"/versions/3.13*/bin/python3.13; do candidates+=("$d"); done
  fi
  candidates+=("$(command -v python3.13 2>/dev/null || true)")
  for c in "${candidates[@]}"; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import localstack' 2>/dev/null; then
    return 0
  fi
  local py
  if ! py=$(find_python313); then
    log "LocalStack $LOCALSTACK_VERSION needs Python 3.13 and none was found."
    log "Install one (pyenv install 3.13.0) or point LOCALSTACK_ENDPOINT at a running LocalStack."
    exit 1
  fi
  log "installing localstack-core $LOCALSTACK_VERSION into $VENV (about a minute)"
  mkdir -p "$STATE_DIR"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "localstack-core[runtime]==$LOCALSTACK_VERSION" \
    cbor2==5.6.5 pyOpenSSL==24.2.1 cryptography==43.0.3 service-identity==24.1.0
}

start() {
  if healthy; then
    log "already answering at $ENDPOINT"
    return 0
  fi
  if [ -n "${LOCALSTACK_ENDPOINT:-}" ]; then
    log "LOCALSTACK_ENDPOINT=$LOCALSTACK_ENDPOINT does not answer"
    exit 1
  fi
  install
  mkdir -p "$STATE_DIR/volume"
  log "starting on 127.0.0.1:$PORT (log: $LOG_FILE)"
  # setsid: its own process group, so stop can take down its children too.
  GATEWAY_LISTEN="127.0.0.1:$PORT" \
  SERVICES="stepfunctions,sqs,sts,events,iam" \
  DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 \
  LOCALSTACK_VOLUME_DIR="$STATE_DIR/volume" \
    setsid "$VENV/bin/python" -m localstack.runtime.main >"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  local deadline=$((SECONDS + 120))
  until healthy; do
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
      log "LocalStack exited during start-up; last lines of its log:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "not healthy after 120 s; last lines of its log:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  log "ready at $ENDPOINT"
}

stop() {
  if [ -f "$PID_FILE" ]; then
    local pid
    pid=$(cat "$PID_FILE")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping pid $pid"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
  fi
}

# Run a command against LocalStack; its exit status is the command's.
run_with() {
  local started=0
  if [ -z "${LOCALSTACK_ENDPOINT:-}" ] && ! healthy; then
    start
    started=1
  fi
  export AWS_ENDPOINT_URL="$ENDPOINT"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  local status=0
  "$@" || status=$?
  if [ "$started" = 1 ]; then stop; fi
  return "$status"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  install) install ;;
  status) healthy ;;
  python313) find_python313 ;;
  run) shift; run_with "$@" ;;
  env)
    echo "export AWS_ENDPOINT_URL=$ENDPOINT"
    echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
    ;;
  *) echo "usage: $0 start|stop|status|install|env|run CMD..." >&2; exit 2 ;;
esac
