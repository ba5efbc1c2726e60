# syntax=docker/dockerfile:1
# The hawser image: built with the official Rust toolchain, run on distroless (glibc, CA
# certificates, no shell) as the non-root user 65532.
#
#   docker build -t ghcr.io/hawser-dev/hawser:0.1.0 .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The target directory is a build cache, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/hawser /hawser

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /hawser /hawser
USER 65532:65532
# 8080 plain HTTP, 8443 HTTPS, 9090 admin (/healthz, /readyz, /metrics, /debug/routes).
EXPOSE 8080 8443 9090
ENTRYPOINT ["/hawser"]
CMD ["run"]
