#!/usr/bin/env bash
# moto's server mode: DynamoDB for the task-ledger tests (LocalStack's
# DynamoDB needs a download that is not possible here).
#
#   scripts/moto.sh install   install it (a venv) if needed; print the path
#                             of the server the tests run (moto-serial: moto's
#                             server one request at a time, see moto_serial.py)
#
# The tests start one moto_server per test on a port of its own
# (MOTO_SERVER tells them which; scripts/test.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="${SFN_WORKER_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sfn-worker}"
VENV="$STATE_DIR/moto-venv"
# The version whose answers were checked against the DynamoDB API
# reference (README: exactly once across workers).
MOTO_VERSION="5.2.1"

log() { printf '[moto] %s\n' "$*" >&2; }

# What the tests run: moto's server one request at a time (why: in
# scripts/moto_serial.py), through a wrapper naming this checkout's script.
serial() {
  cat >"$VENV/bin/moto-serial" <<WRAPPER
#!/bin/sh
exec "$VENV/bin/python" "$PWD/scripts/moto_serial.py" "\$@"
WRAPPER
  chmod +x "$VENV/bin/moto-serial"
  echo "$VENV/bin/moto-serial"
}

install() {
  if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    serial; return 0
  fi
  local py
  py=$(scripts/localstack.sh python313 2>/dev/null || command -v python3)
  log "installing moto[server]==$MOTO_VERSION into $VENV"
  mkdir -p "$STATE_DIR"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  serial
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
