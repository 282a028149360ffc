# Multi-stage build of the `worker` binary (pubsub-jobs' CLI with MockJob linked in).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY worker ./worker
COPY bench ./bench
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release -p pubsub-jobs-cli

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app \
    && mkdir /data && chown app /data
COPY --from=build /src/target/release/worker /usr/local/bin/worker
USER app
# `worker api` keeps its default SQLite store (sqlite://jobs.db) here.
WORKDIR /data
ENV QUEUE_NAME=default PUBSUB_PROJECT_ID=job-queue LOG_FORMAT=json
# SIGTERM starts a graceful shutdown; give it the worker's shutdown timeout and a margin.
STOPSIGNAL SIGTERM
ENTRYPOINT ["worker"]
