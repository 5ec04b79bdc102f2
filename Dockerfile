# syntax=docker/dockerfile:1
# Conveyor: one image holding conveyor-api, conveyor-worker, conveyor-migrate
# and the operator's CLI, conveyor (docker compose exec api conveyor --help).
# Build: docker build -t conveyor:local .   (or docker compose up --build)

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and compiled dependencies between builds,
# so a source change rebuilds only Conveyor's own crates. Only crates.io is
# contacted; no build script downloads anything.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin conveyor-api --bin conveyor-worker --bin conveyor-migrate --bin conveyor \
 && mkdir -p /out \
 && cp target/release/conveyor-api target/release/conveyor-worker target/release/conveyor-migrate \
       target/release/conveyor /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin conveyor
COPY --from=builder /out/ /usr/local/bin/
USER conveyor
ENV LOG_FORMAT=json RUST_LOG=info
EXPOSE 8000
# Each compose service picks its binary with `entrypoint`.
CMD ["conveyor-api"]
