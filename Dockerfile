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
# supply-chain code into the aggregator.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p aicr-agent \
 && cargo build --release --locked -p aicr-aggregator \
 && cargo build --release --locked -p aicr-cli \
 && mkdir -p /out \
 && cp target/release/aicr target/release/aicr-agent target/release/aicr-aggregator /out/

# glibc and libgcc only: NVML (libnvidia-ml.so.1) and nvidia-smi are not in
# the image; the NVIDIA container runtime injects them on GPU nodes.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/aicr"]
