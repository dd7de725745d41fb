#!/usr/bin/env bash
# image.sh: Manifold builds its own images (make image).
#
# 1. cross-compiles manifold (CGO_ENABLED=0) for linux/amd64 and linux/arm64;
# 2. starts a private local stack: the seeded read-only registry (the docker.io
#    mirror, scripts/registry.sh) and that amd64 manifold with its embedded buildkitd;
# 3. builds, through Manifold's API (POST /api/v1/builds with an uploaded context):
#      manifold:latest           linux/amd64 + linux/arm64, from ./Dockerfile (COPY manifold-${TARGETARCH})
#      manifold-buildkitd:latest this machine's platform, bin/buildkitd + bin/buildctl + Debian's runc
#      manifold-registry:latest  this machine's platform, bin/registry, seeded with library/busybox:1
#    (the bin/ tools are built for this machine only, so those two images are single-platform);
# 4. pulls each from Manifold's /v2/ into the Docker engine (DOCKER_HOST, if set) and tags it
#    with the name docker-compose.yml uses; checks that the arm64 manifold answers `version`
#    under QEMU.
# Prints one line per image: `image NAME build ID index DIGEST platforms P,...` (the platforms of the
# manifests the build made, as its API reports them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "image.sh: $1 is missing ($2)" >&2; exit 1; }; }
need docker "apt-get install docker.io"
need curl "apt-get install curl"
need python3 "apt-get install python3"
[ -x bin/buildkitd ] && [ -x bin/registry ] && [ -d bin/seed/busybox ] || { echo "image.sh: run scripts/setup.sh first (bin/ tools and the seed image)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "image.sh: no Docker engine answers (${DOCKER_HOST:-unix:///var/run/docker.sock}); start dockerd first" >&2; exit 1; }

work=$(mktemp -d /tmp/manifold-image.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		curl -fsS "http://127.0.0.1:$p/" >/dev/null 2>&1 || { echo "$p"; return; }
	done
	echo "image.sh: no free loopback port" >&2; exit 1
}

# copy_with_libs BIN DESTROOT DESTPATH: a dynamically linked binary, stripped, with the shared libraries it loads.
copy_with_libs() {
	mkdir -p "$2$(dirname "$3")"
	strip -o "$2$3" "$1" 2>/dev/null || cp "$1" "$2$3"
	chmod 755 "$2$3"
	for lib in $(ldd "$1" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
		mkdir -p "$2$(dirname "$lib")"
		[ -e "$2$lib" ] || cp -L "$lib" "$2$lib"
	done
}

# 1. manifold for both platforms.
mctx=$work/manifold
mkdir -p "$mctx"
for arch in amd64 arm64; do
	log "go build manifold linux/$arch (CGO_ENABLED=0)"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -o "$mctx/manifold-$arch" ./cmd/manifold
done
cp Dockerfile "$mctx/Dockerfile"
cp /etc/ssl/certs/ca-certificates.crt "$mctx/ca-certificates.crt"

# 2. The local stack: the mirror, then manifold (the amd64 one just built) with its embedded buildkitd.
mirror=127.0.0.1:$(free_port)
pid=$(bash scripts/registry.sh "$mirror" "$work/mirror")
[ -n "$pid" ] && pids+=("$pid")
port=$(free_port)
url=http://127.0.0.1:$port
MANIFOLD_LOG_LEVEL=warn "$mctx/manifold-amd64" serve --data "$work/data" --addr "127.0.0.1:$port" \
	--mirror "$mirror" --buildkitd-bin "$ROOT/bin/buildkitd" --build-network none >"$work/manifold.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/healthz" >/dev/null || { cat "$work/manifold.log" >&2; echo "image.sh: manifold did not start" >&2; exit 1; }

# 3. The buildkitd and registry contexts.
host_arch=$(go env GOARCH)
bctx=$work/buildkitd
copy_with_libs bin/buildkitd "$bctx/rootfs" /usr/local/bin/buildkitd
copy_with_libs bin/buildctl "$bctx/rootfs" /usr/local/bin/buildctl
copy_with_libs "$(command -v runc)" "$bctx/rootfs" /usr/local/bin/runc
mkdir -p "$bctx/rootfs/etc/buildkit"
# The compose file's registry service is BuildKit's docker.io mirror, over plain HTTP inside the compose network.
cat >"$bctx/rootfs/etc/buildkit/buildkitd.toml" <<'TOML'
[worker.oci]
  enabled = true
  gc = true
[worker.containerd]
  enabled = false
[registry."docker.io"]
  mirrors = ["registry:5000"]
[registry."registry:5000"]
  http = true
TOML
cat >"$bctx/Dockerfile" <<'DOCKERFILE'
FROM busybox:1
COPY rootfs/ /
VOLUME /var/lib/buildkit
ENTRYPOINT ["buildkitd"]
CMD ["--addr", "unix:///run/buildkit/buildkitd.sock", "--config", "/etc/buildkit/buildkitd.toml", "--oci-worker=true", "--containerd-worker=false"]
DOCKERFILE

rctx=$work/registry
copy_with_libs bin/registry "$rctx/rootfs" /usr/local/bin/registry
mkdir -p "$rctx/rootfs/etc/distribution" "$rctx/rootfs/var/lib/registry"
cp -a "$work/mirror/storage/." "$rctx/rootfs/var/lib/registry/"
cat >"$rctx/rootfs/etc/distribution/config.yml" <<'YAML'
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: true
http:
  addr: :5000
YAML
cat >"$rctx/Dockerfile" <<'DOCKERFILE'
FROM busybox:1
COPY rootfs/ /
VOLUME /var/lib/registry
EXPOSE 5000
ENTRYPOINT ["registry"]
CMD ["serve", "/etc/distribution/config.yml"]
DOCKERFILE

# jfield KEY: a top-level string of the JSON object on stdin.
jfield() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]) or "")' "$1"; }

# build NAME CONTEXT PLATFORMS: one build through Manifold's API; sets $id and $index.
build() {
	local name=$1 ctx=$2 plats=$3
	log "building $name ($plats) through Manifold's API"
	tar -C "$ctx" -cf "$work/ctx.tar" .
	local opts body
	opts=$(printf '{"platforms": [%s], "labels": {"org.opencontainers.image.title": "%s"}}' \
		"$(echo "$plats" | sed 's/[^,]*/"&"/g')" "$name")
	body=$(curl -fsS "$url/api/v1/builds" -F "options=$opts;type=application/json" -F "context=@$work/ctx.tar;type=application/x-tar") ||
		{ echo "image.sh: POST /api/v1/builds for $name failed" >&2; exit 1; }
	id=$(echo "$body" | jfield id)
	[ -n "$id" ] || { echo "image.sh: no build id in $body" >&2; exit 1; }
	local status=""
	for _ in $(seq 1 1200); do
		body=$(curl -fsS "$url/api/v1/builds/$id")
		status=$(echo "$body" | jfield status)
		case $status in succeeded | failed | canceled | interrupted) break ;; esac
		sleep 0.2
	done
	if [ "$status" != succeeded ]; then
		curl -fsS "$url/api/v1/builds/$id/log" >&2 || true
		echo "image.sh: build of $name is $status" >&2
		exit 1
	fi
	index=$(echo "$body" | jfield index_digest)
	built=$(echo "$body" | python3 -c 'import json,sys; print(",".join(m["platform"] for m in json.load(sys.stdin)["manifests"]))')
}

# pull ID NAME: from Manifold's /v2/ into the engine, tagged NAME (the loopback registry needs no TLS).
pull() {
	docker pull -q "127.0.0.1:$port/builds:$1" >/dev/null
	docker tag "127.0.0.1:$port/builds:$1" "$2"
	docker rmi "127.0.0.1:$port/builds:$1" >/dev/null
}

build manifold "$mctx" linux/amd64,linux/arm64
mid=$id
echo "image manifold:latest build $id index $index platforms $built"
# The arm64 image runs under QEMU (binfmt handlers registered by setup.sh).
docker pull -q --platform linux/arm64 "127.0.0.1:$port/builds:$mid" >/dev/null
arm=$(docker run --rm --platform linux/arm64 --network none "127.0.0.1:$port/builds:$mid" version)
echo "arm64 manifold version: $arm"
docker rmi "127.0.0.1:$port/builds:$mid" >/dev/null
pull "$mid" manifold:latest

build buildkitd "$bctx" "linux/$host_arch"
echo "image manifold-buildkitd:latest build $id index $index platforms $built"
pull "$id" manifold-buildkitd:latest

build registry "$rctx" "linux/$host_arch"
echo "image manifold-registry:latest build $id index $index platforms $built"
pull "$id" manifold-registry:latest
log "images ready: manifold:latest, manifold-buildkitd:latest, manifold-registry:latest"
