# The ndots image: one static binary, run as non-root, allowed to bind port 53 by a file capability,
# the way CoreDNS's image is built (docs/sources.md#coredns-plugins). Build:
#
#   docker build -t ndots:0.1.0 .
#
#   docker build --target node-local -t ndots-node-local:0.1.0 .
#
# The image's entry point is the binary, so a Deployment's `args: ["-conf", "/etc/coredns/Corefile"]`
# (CoreDNS's) and node-local-dns's DaemonSet args work unchanged. linux/amd64.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# Static (musl): the runtime image has no libc. The capability lets a non-root process bind 53.
RUN CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p resolver --bin ndots --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/ndots /ndots \
 && setcap cap_net_bind_service=+ep /ndots

# The node-local image: the same binary beside iptables 1.8 (legacy and nft; ndots picks the one the
# node's kube-proxy uses), as node-cache's image is Debian with iptables. Runs as root with NET_ADMIN
# (deploy/node-local-dns.yaml).
FROM debian:bookworm-slim AS node-local
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /ndots /ndots
EXPOSE 53 53/udp 9253 9353
ENTRYPOINT ["/ndots"]

# The default target: the cluster DNS image.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /ndots /ndots
# 65532 is distroless's nonroot; numeric, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 53 53/udp
ENTRYPOINT ["/ndots"]
