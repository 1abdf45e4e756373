#!/usr/bin/env bash
# images.sh: build the three local images the container suite and deploy/compose.yaml use:
#
#   integration-deleter:dev  the daemon (Dockerfile, default target)
#   fake-kombo:dev           the fake Kombo API (Dockerfile, --target fake-kombo)
#   nats-js:dev              nats-server at the version pinned in go.mod, FROM scratch
#
# Nothing is pulled. Needs a running engine (scripts/docker-engine.sh) and, where golang:1.27
# cannot be pulled, the local stand-in (made here by scripts/golang-standin.sh when missing).
# Env: DOCKER (default /usr/bin/docker), VERSION (stamped into the binaries; default from git),
# IMAGE_TAG (default dev).
set -euo pipefail
GOTOOLCHAIN=${GOTOOLCHAIN:-$(sed -n 's/^toolchain //p' "$(dirname "$0")/../go.mod")}
export GOTOOLCHAIN

cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-/usr/bin/docker}
TAG=${IMAGE_TAG:-dev}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
export PATH=/usr/local/go/bin:$PATH
export DOCKER_BUILDKIT=1

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

"$DOCKER" version >/dev/null 2>&1 || die "no Docker engine answers; start one with scripts/docker-engine.sh (as root)"
scripts/golang-standin.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# build LOG docker-build-args...: quiet on success, the log's tail on failure.
build() {
	local logf=$1
	shift
	if ! "$DOCKER" build --progress=plain "$@" >"$logf" 2>&1; then
		tail -40 "$logf" >&2
		die "docker build $* failed"
	fi
}

goargs=(--network host
	--build-arg "GOPROXY=$(go env GOPROXY)" --build-arg "GOSUMDB=$(go env GOSUMDB)"
	--build-arg "GOFLAGS=$(go env GOFLAGS)" --build-arg "GONOSUMDB=$(go env GONOSUMDB)"
	--build-arg "GOPRIVATE=$(go env GOPRIVATE)" --build-arg "VERSION=$VERSION")

SECONDS=0
log "integration-deleter:$TAG (version $VERSION)"
build "$work/deleter.log" "${goargs[@]}" --target integration-deleter -t "integration-deleter:$TAG" .
log "fake-kombo:$TAG"
build "$work/fake.log" "${goargs[@]}" --target fake-kombo -t "fake-kombo:$TAG" .

nats_version=$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
log "nats-js:$TAG (nats-server $nats_version, from go.mod)"
mkdir -p "$work/nats/data"
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/nats/nats-server" github.com/nats-io/nats-server/v2
cat >"$work/nats/Dockerfile" <<DOCKERFILE
FROM scratch
LABEL org.opencontainers.image.title="nats-server" org.opencontainers.image.version="$nats_version" \\
      io.kombo-ops.integration-deleter.image="true"
COPY nats-server /nats-server
COPY --chown=65532:65532 data/ /data/
USER 65532:65532
WORKDIR /data
VOLUME /data
EXPOSE 4222 8222
ENTRYPOINT ["/nats-server"]
CMD ["-js", "-a", "127.0.0.1", "-p", "4222", "-m", "8222", "-sd", "/data"]
DOCKERFILE
build "$work/nats.log" -t "nats-js:$TAG" "$work/nats"
log "built in ${SECONDS}s"
# A rebuild leaves the image it replaced dangling: remove ours.
"$DOCKER" image prune -f --filter "label=io.kombo-ops.integration-deleter.image=true" >/dev/null

for image in "integration-deleter:$TAG" "fake-kombo:$TAG" "nats-js:$TAG"; do
	bytes=$("$DOCKER" image inspect -f '{{.Size}}' "$image")
	awk -v i="$image" -v b="$bytes" 'BEGIN { printf "%-26s %6.1f MB  (%d bytes)\n", i, b / 1e6, b }'
done
