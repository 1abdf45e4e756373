#!/usr/bin/env bash
# test-containers.sh: run the container suite (e2e/) against the local images.
#
# Needs a Docker engine (scripts/docker-engine.sh) and the images (scripts/images.sh). Without an
# engine the suite skips, except with CI=true (or E2E_REQUIRE_DOCKER=1), where that fails.
# Containers carry the label io.kombo-ops.integration-deleter.e2e; leftovers of a killed run are
# removed before and after. Extra arguments go to `go test` (e.g. -run TestNATSRestart).
# Env: DOCKER (default /usr/bin/docker), E2E_TIMEOUT (go test -timeout, default 10m).
set -euo pipefail
GOTOOLCHAIN=${GOTOOLCHAIN:-$(sed -n 's/^toolchain //p' "$(dirname "$0")/../go.mod")}
export GOTOOLCHAIN

cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-/usr/bin/docker}
LABEL=io.kombo-ops.integration-deleter.e2e
export PATH=/usr/local/go/bin:$PATH

# testcontainers-go without a registry: no Ryuk (it would be pulled), the suite's host-network
# provider (no bridge network is created), containers reached on 127.0.0.1.
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_PROVIDER=hostnet
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
if [ "${CI:-}" = true ]; then
	export E2E_REQUIRE_DOCKER=1
fi

remove_leftovers() {
	[ -x "$DOCKER" ] && "$DOCKER" version >/dev/null 2>&1 || return 0
	local ids
	ids=$("$DOCKER" ps -aq --filter "label=$LABEL")
	if [ -n "$ids" ]; then
		echo "test-containers: removing $(echo "$ids" | wc -l) leftover container(s)" >&2
		# shellcheck disable=SC2086
		"$DOCKER" rm -f -v $ids >/dev/null
	fi
}
remove_leftovers
trap remove_leftovers EXIT

go test -count=1 -timeout "${E2E_TIMEOUT:-10m}" -v ./e2e/... "$@"
