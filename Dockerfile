# syntax=docker/dockerfile:1
# berth container image: `docker build -t berth-base:0.1.0 .` (DOCKER_BUILDKIT=1)
# Runs `berth daemon`; pass the rest of the command line (or rely on the default CMD).
# The agent config is not part of this image: layer it on top (deploy/README.md) or
# mount it at /etc/berth/berth.yaml.

# ---- build ----
FROM rust:1.95-bookworm AS builder
# The rust image (buildpack-deps) already has pkg-config and libssl-dev, which git2's
# https transport links against; libgit2 and libssh2 are built from source (vendored).
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo.toml names benches/render.rs as a target, so the manifest needs it present.
COPY benches ./benches
COPY src ./src
# The release-small profile (opt-level "s", fat LTO): a 19 MB binary instead of 44 MB and
# ~8 MiB less resident memory at the same poll CPU (docs/operations.md, "Running it").
# Packed relative relocations (bookworm's glibc 2.36 reads them): 1 MiB less resident, PIE kept
# (docs/benchmarks.md).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo rustc --profile release-small --locked --bin berth -- -C link-arg=-Wl,-z,pack-relative-relocs \
 && install -D -m 0755 target/release-small/berth /out/berth

# ---- runtime ----
FROM debian:bookworm-slim
# ca-certificates: TLS to AWS and the git host. libssl3: git2's https transport.
# curl: the container health check (deploy/task-definition.json). No git binary needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 berth \
 && useradd --system --uid 10001 --gid berth --home-dir /var/lib/berth --shell /usr/sbin/nologin berth \
 && install -d -o berth -g berth -m 0700 /var/lib/berth \
 && install -d -m 0755 /etc/berth
COPY --from=builder /out/berth /usr/local/bin/berth
USER 10001:10001
WORKDIR /var/lib/berth
# 9090: /metrics, /healthz, /readyz, /status. 8080: POST /webhook/github.
EXPOSE 9090 8080
# berth drains within 30 s of SIGTERM; give `docker stop` at least 40 s (--stop-timeout 40).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/berth", "daemon"]
CMD ["--config", "/etc/berth/berth.yaml", "--log-format", "json"]
