# The Fleetplane server image: the `fleetplane` binary and the built web UI.
# docker build -t fleetplane . && docker run -p 8080:8080 fleetplane
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/src/target
RUN cargo xtask build-ui --release && cargo build --release --package fleetplane

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/fleetplane --create-home fleetplane
COPY --from=build /src/target/release/fleetplane /usr/local/bin/fleetplane
COPY --from=build /src/target/site /usr/share/fleetplane/site
ENV FLEETPLANE_SITE_DIR=/usr/share/fleetplane/site \
    FLEETPLANE_DATA_DIR=/var/lib/fleetplane \
    FLEETPLANE_LISTEN=0.0.0.0:8080
USER fleetplane
EXPOSE 8080
ENTRYPOINT ["fleetplane"]
CMD ["serve"]
