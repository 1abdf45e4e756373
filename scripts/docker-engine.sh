#!/usr/bin/env bash
# docker-engine.sh: make a local Docker engine answer at /var/run/docker.sock.
#
# Idempotent: does nothing when an engine already answers; installs Debian's docker.io (with
# service starts blocked) when dockerd is missing; starts dockerd detached otherwise. The engine
# runs without a bridge, iptables or IP masquerading: every container here uses host networking
# on loopback ports. Nothing is ever pulled. Must run as root.
#
# Env: DOCKER (client, default /usr/bin/docker), DOCKERD_CONFIG (default /etc/docker/daemon.json),
# DOCKER_ENGINE_STATE_DIR (log and pid file; default ${TMPDIR:-/tmp}/integration-deleter-docker),
# DOCKER_ENGINE_TIMEOUT (seconds to wait for the API; default 60).
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
DOCKERD_CONFIG=${DOCKERD_CONFIG:-/etc/docker/daemon.json}
STATE_DIR=${DOCKER_ENGINE_STATE_DIR:-${TMPDIR:-/tmp}/integration-deleter-docker}
TIMEOUT=${DOCKER_ENGINE_TIMEOUT:-60}
SOCK=/var/run/docker.sock
export DOCKER_HOST=unix://$SOCK

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

answers() { [ -x "$DOCKER" ] && "$DOCKER" version >/dev/null 2>&1; }

if answers; then
	log "engine already running ($("$DOCKER" version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}'))"
	exit 0
fi
[ "$(id -u)" = 0 ] || die "no Docker engine answers at $SOCK, and installing or starting one needs root"

# daemon.json is read however dockerd is started. Its settings must not also be passed as flags:
# dockerd refuses a setting given both ways.
write_daemon_json() {
	mkdir -p "$(dirname "$DOCKERD_CONFIG")"
	if [ ! -e "$DOCKERD_CONFIG" ]; then
		cat > "$DOCKERD_CONFIG" <<'JSON'
{
  "bridge": "none",
  "iptables": false,
  "ip-masq": false,
  "ip-forward": false
}
JSON
	elif ! grep -Eq '"bridge"[[:space:]]*:[[:space:]]*"none"' "$DOCKERD_CONFIG"; then
		die "$DOCKERD_CONFIG exists without \"bridge\": \"none\"; refusing (dockerd would create a docker0 bridge)"
	fi
}

install_docker() {
	# The package's maintainer scripts would start the service; block that while apt runs.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
}

write_daemon_json
if ! command -v dockerd >/dev/null || [ ! -x "$DOCKER" ]; then
	log "installing docker.io (service start blocked)"
	install_docker
fi

# live PIDFILE NAME: whether PIDFILE names a running (not zombie) process called NAME.
live() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] &&
		! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

mkdir -p "$STATE_DIR"
LOG=$STATE_DIR/dockerd.log
if live /var/run/docker.pid dockerd; then
	# Started by someone else a moment ago: wait for it rather than start a second one.
	cp /var/run/docker.pid "$STATE_DIR/dockerd.pid"
	log "dockerd (pid $(cat /var/run/docker.pid)) is starting; waiting for it"
else
	# A dockerd or containerd that was killed leaves its pid file behind, and dockerd refuses
	# to start while it is there.
	rm -f /var/run/docker.pid
	live /var/run/docker/containerd/containerd.pid containerd || rm -f /var/run/docker/containerd/containerd.pid
	log "starting dockerd (config $DOCKERD_CONFIG, log $LOG)"
	# setsid: dockerd outlives this script and the caller's process group.
	setsid nohup dockerd --config-file "$DOCKERD_CONFIG" -H "unix://$SOCK" >"$LOG" 2>&1 </dev/null &
	echo $! >"$STATE_DIR/dockerd.pid"
fi

deadline=$((SECONDS + TIMEOUT))
until answers; do
	if ! kill -0 "$(cat "$STATE_DIR/dockerd.pid")" 2>/dev/null; then
		tail -20 "$LOG" >&2 || true
		die "dockerd exited; see $LOG"
	fi
	[ "$SECONDS" -lt "$deadline" ] || { tail -20 "$LOG" >&2 || true; die "dockerd did not answer within ${TIMEOUT}s; see $LOG"; }
	sleep 0.1
done
log "engine ready ($("$DOCKER" version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}'))"
