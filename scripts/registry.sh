#!/usr/bin/env bash
# registry.sh ADDR DIR: make sure a registry answers on ADDR (host:port) holding
# library/busybox:1, read-only. It starts bin/registry with its storage in DIR
# when nothing answers there. The seed image is written by a second, private
# registry process on another loopback port over the same storage, which stops
# before the read-only one starts: nobody can push into the mirror that every
# build's `FROM busybox:1` reads. Prints the started pid, or nothing when a
# registry was already running.
set -euo pipefail
cd "$(dirname "$0")/.."
addr=$1 dir=$2
mkdir -p "$dir"
chmod 700 "$dir"
pid=""

config() { # config ADDR READONLY
	cat <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: $2
http:
  addr: $1
YAML
}

wait_up() { # wait_up ADDR LOG
	for _ in $(seq 1 100); do curl -fsS "http://$1/v2/" >/dev/null 2>&1 && return 0; sleep 0.05; done
	echo "registry on $1 did not start; see $2" >&2
	exit 1
}

tag_link=$dir/storage/docker/registry/v2/repositories/library/busybox/_manifests/tags/1/current/link
if ! curl -fsS "http://$addr/v2/" >/dev/null 2>&1; then
	if [ ! -s "$tag_link" ]; then
		# Seed through a writable registry that only this script talks to.
		seed_addr=""
		for _ in $(seq 1 50); do
			p=$((20000 + RANDOM % 40000))
			curl -fsS "http://127.0.0.1:$p/" >/dev/null 2>&1 || { seed_addr=127.0.0.1:$p; break; }
		done
		[ -n "$seed_addr" ] || { echo "registry.sh: no free loopback port to seed on" >&2; exit 1; }
		config "$seed_addr" false >"$dir/seed.yml"
		REGISTRY_HTTP_SECRET=manifold-local-seed bin/registry serve "$dir/seed.yml" >>"$dir/registry.log" 2>&1 &
		seed_pid=$!
		trap 'kill $seed_pid 2>/dev/null || true' EXIT
		wait_up "$seed_addr" "$dir/registry.log"
		skopeo copy -q --all --dest-tls-verify=false oci:bin/seed/busybox:1 "docker://$seed_addr/library/busybox:1"
		kill "$seed_pid"; wait "$seed_pid" 2>/dev/null || true
		trap - EXIT
		rm -f "$dir/seed.yml"
	fi
	config "$addr" true >"$dir/config.yml"
	REGISTRY_HTTP_SECRET=manifold-local bin/registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
	pid=$!
	wait_up "$addr" "$dir/registry.log"
fi
if ! curl -fs -o /dev/null "http://$addr/v2/library/busybox/manifests/1" -H 'Accept: application/vnd.oci.image.index.v1+json'; then
	echo "registry.sh: the registry already answering on $addr does not hold library/busybox:1; stop it, or set MANIFOLD_MIRROR to another address" >&2
	exit 1
fi
echo "$pid"
