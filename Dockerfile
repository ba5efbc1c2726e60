# syntax=docker/dockerfile:1
# The hawser image: built with the official Rust toolchain, run on distroless (glibc, CA
# certificates, no shell) as the non-root user 65532.
#
#   docker build -t ghcr.io/hawser-dev/hawser:0.1.0 .
#
# Base images are pinned by the digest of their multi-platform index (linux/amd64 and
# linux/arm64 both resolve from it), with the tag kept for people. To refresh one, read the
# index digest ("Digest:" at the top) and replace it here:
#
#   docker buildx imagetools inspect rust:1.89-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#
# rust:1.89 is the crate's rust-version (Cargo.toml); raise both together.

FROM rust:1.89-bookworm@sha256:948f9b08a66e7fe01b03a98ef1c7568292e07ec2e4fe90d88c07bb14563c84ff AS build
WORKDIR /src
# What `cargo build --release --locked` reads: the manifests, the sources, and the quickstart
# manifests that src/quickstart.rs embeds with include_str! (examples/ also holds the benchmark's
# load generator: cargo reads its manifest as a member of the workspace, and builds only hawser).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
# The target directory is a build cache (one per platform, so a linux/amd64 and a linux/arm64
# build never share one), so the binary is copied out in the same step.
ARG TARGETPLATFORM
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=hawser-target-${TARGETPLATFORM} \
    cargo build --release --locked \
    && cp target/release/hawser /hawser

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /hawser /hawser
USER 65532:65532
# 8080 plain HTTP, 8443 HTTPS, 9090 admin (/healthz, /readyz, /metrics, /debug/routes).
EXPOSE 8080 8443 9090
ENTRYPOINT ["/hawser"]
CMD ["run"]
