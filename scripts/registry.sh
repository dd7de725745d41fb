#!/usr/bin/env bash
# registry.sh ADDR DIR: make sure a registry answers on ADDR (host:port) holding
# library/busybox:1. It starts bin/registry with its storage in DIR when nothing
# answers there, and seeds it from bin/seed/busybox. Prints the started pid, or
# nothing when a registry was already running.
set -euo pipefail
cd "$(dirname "$0")/.."
addr=$1 dir=$2
mkdir -p "$dir"
pid=""
if ! curl -fsS "http://$addr/v2/" >/dev/null 2>&1; then
	cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $addr
YAML
	REGISTRY_HTTP_SECRET=manifold-local bin/registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do curl -fsS "http://$addr/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
	curl -fsS "http://$addr/v2/" >/dev/null || { echo "registry on $addr did not start; see $dir/registry.log" >&2; exit 1; }
fi
if ! curl -fs -o /dev/null "http://$addr/v2/library/busybox/manifests/1" -H 'Accept: application/vnd.oci.image.index.v1+json'; then
	skopeo copy -q --all --dest-tls-verify=false oci:bin/seed/busybox:1 "docker://$addr/library/busybox:1"
fi
echo "$pid"
