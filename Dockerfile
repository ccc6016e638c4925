# syntax=docker/dockerfile:1
# Multi-stage build: the release binary on a distroless base (glibc, CA roots, no shell),
# running as non-root. Build with `make image`; the chart mounts its config at
# /etc/tollgate/tollgate.yaml.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
# Cache mounts keep the registry and build artefacts between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tollgate \
 && strip -o /tollgate target/release/tollgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /tollgate /usr/local/bin/tollgate
COPY config/tollgate.example.yaml /etc/tollgate/tollgate.yaml
USER 65532:65532
EXPOSE 8080 8081 9090
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/tollgate.yaml"]
