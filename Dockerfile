# Images of integration-deleter and of fake-kombo, from one Dockerfile:
#
#   docker build -t integration-deleter:dev .                     (the default, last stage)
#   docker build --target fake-kombo -t fake-kombo:dev .
#
# `make images` builds both (and a NATS image). BuildKit is needed for the cache mounts
# (DOCKER_BUILDKIT=1). Where no registry is reachable, scripts/golang-standin.sh makes a local
# golang:1.27. There is deliberately no "# syntax=" line: it would pull a frontend image.

FROM golang:1.27 AS build
# The host's Go settings, so the build reaches the same module proxy (all optional).
ARG GOPROXY
ARG GOSUMDB
ARG GOFLAGS
ARG GONOSUMDB
ARG GOPRIVATE
# What the final images hold besides the binary: CA roots and an empty, writable /tmp.
RUN mkdir -p /rootfs/tmp /rootfs/etc/ssl/certs \
 && chmod 1777 /rootfs/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/
WORKDIR /src
# No `go mod download`: it would fetch every module in go.mod, the bench's plotting and the
# container suite's testcontainers included. `go build` fetches only the modules its binary
# imports, into the cache mount, which also keeps them across builds.
COPY . .
ENV CGO_ENABLED=0

FROM build AS build-fake-kombo
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/fake-kombo ./cmd/fake-kombo

FROM build AS build-integration-deleter
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/integration-deleter ./cmd/integration-deleter

# What both images share. No shell; a non-root numeric user.
FROM scratch AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.version="${VERSION}" \
      io.kombo-ops.integration-deleter.image="true"
COPY --from=build /rootfs/ /
USER 65532:65532

FROM runtime AS fake-kombo
LABEL org.opencontainers.image.title="fake-kombo"
COPY --from=build-fake-kombo /out/fake-kombo /fake-kombo
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/fake-kombo", "healthcheck"]
ENTRYPOINT ["/fake-kombo"]

# The default target: the daemon.
FROM runtime AS integration-deleter
LABEL org.opencontainers.image.title="integration-deleter"
COPY --from=build-integration-deleter /out/integration-deleter /integration-deleter
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/integration-deleter", "healthcheck"]
ENTRYPOINT ["/integration-deleter"]
CMD ["run"]
