# syntax=docker/dockerfile:1
# One image, three binaries: aicr (CLI), aicr-agent (node DaemonSet) and
# aicr-aggregator. Build from the repository root:
#   docker build -t aicr:0.1.0 .
# The image runs as the distroless non-root user (65532), which is what the
# aggregator wants; the chart runs the agent as root, since it reads host
# files and systemd's private socket.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches only speed up rebuilds; the binaries are
# copied out of the cache in the same step. Each binary is built on its
# own: built together, Cargo would unify the core's features and link the
# CLI's Kubernetes, Sigstore and OCI code into the agent and the CLI's
# supply-chain code into the aggregator. `dist` is the release profile with
# whole-program LTO (Cargo.toml).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p aicr-agent \
 && cargo build --profile dist --locked -p aicr-aggregator \
 && cargo build --profile dist --locked -p aicr-cli \
 && mkdir -p /out \
 && cp target/dist/aicr target/dist/aicr-agent target/dist/aicr-aggregator /out/

# glibc and libgcc only: NVML (libnvidia-ml.so.1) and nvidia-smi are not in
# the image; the NVIDIA container runtime injects them on GPU nodes.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/aicr"]
