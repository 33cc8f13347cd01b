# Multi-stage build of the parley binary. The builder stage runs the same release build that
# README.md's first command runs; the runtime image holds only the binary and runs as a
# non-root user. (No Docker engine runs on the project's build machines: see README.md.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin parley

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data parley \
    && mkdir -p /data && chown parley /data
COPY --from=build /src/target/release/parley /usr/local/bin/parley
USER parley
VOLUME /data
EXPOSE 8080
ENV PARLEY_LISTEN=0.0.0.0:8080 PARLEY_DATA_DIR=/data
ENTRYPOINT ["/usr/local/bin/parley"]
CMD ["serve"]
