# syntax=docker/dockerfile:1
# The dialer's image (README, "Container image"): `docker build -t dialer .`. Where there is no registry or
# engine, `scripts/image` builds and runs an image with the same contract from the host's cargo build:
# ENTRYPOINT ["dialer"], user 65532:65532, ports 8080 (LISTEN_ADDR) and 8081 (API_LISTEN_ADDR).

FROM rust:1-bookworm AS build
WORKDIR /src
# SQL is checked at compile time against the committed offline data in .sqlx/: no database while building.
ENV SQLX_OFFLINE=true
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dialer \
    && install -D -m 0755 target/release/dialer /out/dialer \
    && strip /out/dialer

FROM debian:bookworm-slim
# CA certificates for Twilio and webhook receivers over TLS, time-zone data for contacts' calling windows, and
# the unprivileged user the Helm chart runs as (runAsUser 65532).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /out/dialer /usr/local/bin/dialer
# Listen on every interface: a container's loopback is its own (override per role, e.g. in the chart).
ENV LISTEN_ADDR=0.0.0.0:8080 \
    API_LISTEN_ADDR=0.0.0.0:8081 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080 8081
# Healthy = GET /healthz on LISTEN_ADDR answers 200 (the database answers and has every migration). No curl in
# the image: bash's /dev/tcp. Kubernetes ignores this and uses the chart's httpGet probes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 CMD bash -c '\
    addr="${LISTEN_ADDR:-0.0.0.0:8080}"; host="${addr%:*}"; port="${addr##*:}"; \
    case "$host" in 0.0.0.0|"[::]"|"") host=127.0.0.1 ;; esac; \
    exec 3<>"/dev/tcp/${host}/${port}" || exit 1; \
    printf "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3; \
    read -r _ code _ <&3; [ "$code" = 200 ]'
ENTRYPOINT ["dialer"]
