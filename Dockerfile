# sfn-worker container image: a static binary, CA certificates, nothing else.
#
#   docker build -t sfn-worker .
#   # your own binary with your handlers (examples/custom-handler):
#   docker build --build-arg PACKAGE=orders-worker --build-arg BIN=orders-worker -t orders-worker .
#   # handlers that exec programs need those programs: pick a base that has them
#   docker build --build-arg RUNTIME_BASE=debian:bookworm-slim -t sfn-worker:exec .
#
# Runs as the numeric non-root user 65532 and writes nothing to disk, so a
# read-only root filesystem works. The default command reads the
# configuration from /etc/sfn-worker/config.toml (mount it there).

ARG RUST_VERSION=1.95
ARG RUNTIME_BASE=scratch

FROM rust:${RUST_VERSION}-bookworm AS build
ARG PACKAGE=sfn-worker
ARG BIN=sfn-worker
WORKDIR /src
COPY . .
# crt-static: the runtime image has no libc. glibc >= 2.34 resolves names
# (files, dns) inside libc itself, so a static binary needs no NSS modules.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --profile image --locked -p "${PACKAGE}" --bin "${BIN}" --target x86_64-unknown-linux-gnu \
    && cp "target/x86_64-unknown-linux-gnu/image/${BIN}" /sfn-worker

# checkov:skip=CKV_DOCKER_7:RUNTIME_BASE defaults to scratch, which has no tag; a base given at build time should be pinned by its builder.
FROM ${RUNTIME_BASE}
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /sfn-worker /usr/local/bin/sfn-worker
ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 9464
# The image has no shell or curl: the binary checks its own /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s CMD ["sfn-worker", "healthcheck"]
ENTRYPOINT ["sfn-worker"]
CMD ["run", "--config", "/etc/sfn-worker/config.toml"]
