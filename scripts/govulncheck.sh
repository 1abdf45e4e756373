#!/usr/bin/env bash
# govulncheck ./... (pinned in go.mod's tool block) against a local copy of the
# Go vulnerability database, built from the golang.org/x/vulndb module that the
# Go module proxy serves: this machine and CI reach the proxy but not the
# database's own site. Exits non-zero when a vulnerable symbol is reachable.
#
# To take newer advisories, bump VULNDB_VERSION and VULNDB_SUM together:
#   go list -m -versions golang.org/x/vulndb   (or: go list -m golang.org/x/vulndb@master)
#   (cd /tmp && go mod download -json golang.org/x/vulndb@VERSION) | grep '"Sum"'
# Extra arguments go to govulncheck before the pattern, e.g. `-show verbose`.
set -euo pipefail
GOTOOLCHAIN=${GOTOOLCHAIN:-$(sed -n 's/^toolchain //p' "$(dirname "$0")/../go.mod")}
export GOTOOLCHAIN
cd "$(dirname "$0")/.."

VULNDB_VERSION="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"
VULNDB_SUM="${VULNDB_SUM:-h1:mfngRv0Yoh0VApsXKEN82CjD99kl7mtparN3bs3JnqI=}"
cache="${VULNDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/integration-deleter/vulndb}"
db="$cache/$VULNDB_VERSION"

if [ ! -f "$db/index/modules.json" ]; then
	go run ./scripts/vulndb -module "golang.org/x/vulndb@$VULNDB_VERSION" -sum "$VULNDB_SUM" -out "$db"
fi
echo "govulncheck: database golang.org/x/vulndb@$VULNDB_VERSION ($db)"
exec go tool govulncheck -db "file://$db" "$@" ./...
