#!/usr/bin/env bash
# Build and try the container image without a Docker engine: a static
# release binary built on the host, put FROM scratch by buildah
# (deploy/container/Containerfile.prebuilt, the runtime stage of the
# Dockerfile), then run with podman: --version, `check` on a mounted config,
# and the image's health-check command. Prints the image size.
#
#   scripts/image.sh                       # sfn-worker
#   PACKAGE=orders-worker BIN=orders-worker scripts/image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE="${PACKAGE:-sfn-worker}"
BIN="${BIN:-sfn-worker}"
IMAGE="${IMAGE:-localhost/$BIN:ci}"
TARGET=x86_64-unknown-linux-gnu
log() { printf '[image] %s\n' "$*" >&2; }

log "building a static $BIN (profile image, $TARGET, crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --profile image --locked -p "$PACKAGE" --bin "$BIN" --target "$TARGET"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
binary="$target_dir/$TARGET/image/$BIN"
# (Not ldd: for a static-pie binary it says "statically linked" and exits 0.)
if readelf -d "$binary" | grep -q NEEDED; then
  log "$binary needs shared libraries; a FROM scratch image cannot run it:"
  readelf -d "$binary" | grep NEEDED >&2
  exit 1
fi
log "binary: $(du -h "$binary" | cut -f1) ($(file -b "$binary" 2>/dev/null | cut -d, -f1-2 || true))"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$binary" "$ctx/sfn-worker"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
buildah bud --quiet --format docker --isolation chroot -f deploy/container/Containerfile.prebuilt -t "$IMAGE" "$ctx" >/dev/null

podman_run() {
  podman run --rm --runtime runc --cgroup-manager cgroupfs --no-healthcheck \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --read-only --cap-drop ALL --security-opt no-new-privileges "$@"
}
log "run: --version"
podman_run "$IMAGE" --version
log "run: check on a mounted config (read-only root filesystem, user 65532)"
cat >"$ctx/config.toml" <<'TOML'
[aws]
region = "us-east-1"
[worker]
metrics_addr = "0.0.0.0:9464"
[[activity]]
arn = "arn:aws:states:us-east-1:123456789012:activity:resize"
handler = "echo"
TOML
chmod 0644 "$ctx/config.toml"
podman_run -v "$ctx/config.toml:/etc/sfn-worker/config.toml:ro" "$IMAGE" check --config /etc/sfn-worker/config.toml >/dev/null
log "run: the health-check command fails cleanly when nothing listens"
if podman_run "$IMAGE" healthcheck --url http://127.0.0.1:9/healthz 2>/dev/null; then
  log "healthcheck succeeded with nothing listening"
  exit 1
fi
# The real job, when LocalStack answers: serve an activity from the image,
# reaching LocalStack by *name* (a static binary in a scratch image must
# resolve without NSS modules), then SIGTERM and expect exit 0.
endpoint="${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}"
if curl -fsS --max-time 2 "$endpoint/_localstack/health" >/dev/null 2>&1; then
  name="sfn-worker-image-$$"
  arn=$(curl -fsS "$endpoint" -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'X-Amz-Target: AWSStepFunctions.CreateActivity' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0' \
    -d "{\"name\":\"$name\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["activityArn"])')
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$ctx/live.toml" <<TOML
[aws]
region = "us-east-1"
endpoint_url = "${endpoint/127.0.0.1/localhost}"
[worker]
metrics_addr = "127.0.0.1:$port"
shutdown_grace_secs = 5
[[activity]]
arn = "$arn"
handler = "echo"
TOML
  chmod 0644 "$ctx/live.toml"
  log "run: serving $arn from the image against ${endpoint/127.0.0.1/localhost}"
  podman run -d --name "$name" --runtime runc --cgroup-manager cgroupfs --no-healthcheck --network host \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --read-only --cap-drop ALL --security-opt no-new-privileges \
    -e AWS_ACCESS_KEY_ID=test -e AWS_SECRET_ACCESS_KEY=test \
    -v "$ctx/live.toml:/etc/sfn-worker/config.toml:ro" "$IMAGE" >/dev/null
  ready=0
  for _ in $(seq 1 100); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; then ready=1; break; fi
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    podman logs "$name" >&2 || true
    podman rm -f "$name" >/dev/null 2>&1 || true
    log "the container never became ready"
    exit 1
  fi
  podman exec "$name" sfn-worker healthcheck --url "http://127.0.0.1:$port/healthz"
  log "ready; SIGTERM (it waits for its open poll to return, up to a minute)"
  podman kill --signal TERM "$name" >/dev/null
  status=$(podman wait "$name")
  podman rm -f "$name" >/dev/null 2>&1 || true
  if [ "$status" != 0 ]; then
    log "the container exited with $status after SIGTERM"
    exit 1
  fi
  log "exited 0 after SIGTERM"
else
  printf '\n!!!!! SKIPPED: serving from the image: no LocalStack at %s !!!!!\n\n' "$endpoint" >&2
fi

user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "image $IMAGE: user $user, size $((size / 1024 / 1024)) MiB ($size bytes)"
echo "IMAGE_SIZE_BYTES=$size"
