#!/usr/bin/env bash
# golang-standin.sh: make a local golang:1.27 image when none exists, for the Dockerfile's
# build stage where no registry can be reached.
#
# The stand-in is `docker import`ed from a tarball: the GOROOT of go.mod's toolchain (fetched by the
# go command from the module proxy; statically linked), put at /usr/local/go,
# a static busybox shell (Debian's busybox-static, unpacked, not installed), the CA bundle, /tmp,
# and a minimal /etc/passwd and /etc/group. Where a registry is reachable, a real golang:1.27
# pulled beforehand is used as it is. REBUILD_GOLANG_IMAGE=1 replaces an existing image.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
GOTOOLCHAIN=${GOTOOLCHAIN:-$(sed -n 's/^toolchain //p' "$(dirname "$0")/../go.mod")}
export GOTOOLCHAIN
GOROOT_HOST=${GOROOT_HOST:-$(go env GOROOT)}
IMAGE=golang:1.27

log() { printf 'golang-standin: %s\n' "$*" >&2; }

goversion=$(go env GOVERSION | sed 's/^go//')
if [ "${REBUILD_GOLANG_IMAGE:-0}" != 1 ] && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
	comment=$("$DOCKER" image inspect -f '{{.Comment}}' "$IMAGE")
	have=$("$DOCKER" image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" |
		sed -n 's/^GOLANG_VERSION=//p')
	# A real golang image is kept as it is; a stand-in follows the host's Go.
	if [[ $comment != "local stand-in for"* ]] || [ "$have" = "$goversion" ]; then
		log "$IMAGE present (go $have)"
		exit 0
	fi
	log "$IMAGE is a stand-in for go $have; the host has go $goversion: making it again"
fi

case $goversion in
1.27 | 1.27.*) ;;
*) log "Go is $goversion, not 1.27.x; cannot stand in for $IMAGE"; exit 1 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/golang-standin.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage
cd "$work"
apt-get download busybox-static >/dev/null 2>&1 || { apt-get update -qq && apt-get download busybox-static >/dev/null; }
dpkg-deb -x busybox-static_*.deb deb
mkdir -p "$stage/bin" "$stage/tmp" "$stage/etc/ssl/certs" "$stage/go/bin" "$stage/go/pkg" "$stage/root"
chmod 1777 "$stage/tmp"
cp deb/bin/busybox "$stage/bin/busybox"
for applet in $("$stage/bin/busybox" --list); do
	[ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done
cp /etc/ssl/certs/ca-certificates.crt "$stage/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$stage/etc/group"
echo 'hosts: files dns' > "$stage/etc/nsswitch.conf"

log "importing $IMAGE from $GOROOT_HOST (go $goversion) + busybox-static"
root=${GOROOT_HOST#/}
tar --numeric-owner -cf - -C "$stage" . -C / --exclude="$root/test" --exclude="$root/doc" \
	--transform "s,^$root,usr/local/go," "$root" |
	"$DOCKER" import \
		--change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change "ENV GOLANG_VERSION=$goversion" \
		--change 'ENV GOTOOLCHAIN=local' --change 'ENV GOPATH=/go' \
		--change 'WORKDIR /go' --change 'CMD ["/bin/sh"]' \
		--message "local stand-in for $IMAGE (host Go $goversion + busybox-static)" - "$IMAGE" >/dev/null
"$DOCKER" tag "$IMAGE" "golang:$goversion"
log "made $IMAGE and golang:$goversion"
