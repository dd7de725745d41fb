#!/usr/bin/env bash
# setup.sh prepares a fresh Debian machine (as root) for `make run` and `make test`.
# Every step checks first and does nothing when its result is already there, so a
# second run takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin
mkdir -p "$BIN"

log() { printf '==> %s\n' "$*" >&2; }

# 1. Debian packages. containernetworking-plugins (in /usr/lib/cni), iptables and
# iproute2 give RUN steps their own network (manifold serve --build-network bridge).
# docker.io, docker-compose, curl and python3 are for make image and the compose test
# (their own dockerd; no service is started here).
need_pkgs=()
for p in runc qemu-user-static skopeo umoci chromium git ca-certificates containernetworking-plugins iptables iproute2 docker.io docker-compose curl python3 binutils; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing Debian packages: ${need_pkgs[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# 2. busybox-static for amd64 and arm64, unpacked into rootfs folders for the seed image.
SEED=$BIN/seed
if [ ! -x "$SEED/rootfs-amd64/bin/busybox" ] || [ ! -x "$SEED/rootfs-arm64/bin/busybox" ]; then
	log "fetching busybox-static for amd64 and arm64"
	dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
	tmp=$(mktemp -d)
	chmod 755 "$tmp" # apt-get download runs as _apt where it can
	(cd "$tmp" && apt-get download -qq busybox-static:amd64 busybox-static:arm64 >/dev/null) ||
		{ apt-get update -qq; (cd "$tmp" && apt-get download -qq busybox-static:amd64 busybox-static:arm64 >/dev/null); }
	rm -rf "$SEED/rootfs-amd64" "$SEED/rootfs-arm64"
	for arch in amd64 arm64; do
		x=$tmp/x-$arch
		dpkg-deb -x "$tmp"/busybox-static_*_"$arch".deb "$x"
		r=$SEED/rootfs-$arch.tmp
		rm -rf "$r"
		mkdir -p "$r/bin" "$r/sbin" "$r/usr/bin" "$r/usr/sbin" "$r/tmp" "$r/etc" "$r/root"
		cp "$x/bin/busybox" "$r/bin/busybox"
		chmod 1777 "$r/tmp"
		printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
		printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	done
	# Applet links, listed by the native (amd64) binary; both packages are the same version.
	for applet in $("$tmp/x-amd64/bin/busybox" --list-full); do
		for arch in amd64 arm64; do
			r=$SEED/rootfs-$arch.tmp
			[ "$applet" = bin/busybox ] && continue
			mkdir -p "$r/$(dirname "$applet")"
			[ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
		done
	done
	mv "$SEED/rootfs-amd64.tmp" "$SEED/rootfs-amd64"
	mv "$SEED/rootfs-arm64.tmp" "$SEED/rootfs-arm64"
	rm -rf "$tmp"
fi

# 3. buildkitd, buildctl and the registry, built at the versions go.mod and tools/go.mod pin.
want_bk=$(go list -m -f '{{.Version}}' github.com/moby/buildkit)
tools_bk=$(cd tools && go list -m -f '{{.Version}}' github.com/moby/buildkit)
if [ "$want_bk" != "$tools_bk" ]; then
	echo "setup: go.mod requires buildkit $want_bk but tools/go.mod builds $tools_bk; make them equal" >&2
	exit 1
fi
want_reg=$(cd tools && go list -m -f '{{.Version}}' github.com/distribution/distribution/v3)
stamp="buildkit=$want_bk registry=$want_reg go=$(go env GOVERSION)"
if [ "$(cat "$BIN/.tools-stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$BIN/buildkitd" ] || [ ! -x "$BIN/buildctl" ] || [ ! -x "$BIN/registry" ]; then
	log "building buildkitd, buildctl $want_bk and registry $want_reg into bin/ (minutes the first time)"
	(cd tools && go build -ldflags "-X github.com/moby/buildkit/version.Version=$want_bk" -o "$BIN/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl github.com/distribution/distribution/v3/cmd/registry)
	echo "$stamp" >"$BIN/.tools-stamp"
fi
got_bk=$(go version -m "$BIN/buildkitd" | awk '($1 == "dep" || $1 == "mod") && $2 == "github.com/moby/buildkit" {print $3}')
if [ "$got_bk" != "$want_bk" ]; then
	echo "setup: bin/buildkitd is $got_bk but go.mod requires $want_bk" >&2
	exit 1
fi

# 3b. docker buildx (the standalone binary; its remote driver needs no Docker engine), for the
#     builder endpoint's tests: go install at the pinned version, kept in bin/.
want_bx=v0.38.2
if [ "$(cat "$BIN/.buildx-stamp" 2>/dev/null)" != "$want_bx go=$(go env GOVERSION)" ] || [ ! -x "$BIN/buildx" ]; then
	log "building buildx $want_bx into bin/ (minutes the first time)"
	(cd /tmp && GOBIN="$BIN" GOFLAGS=-mod=mod go install "github.com/docker/buildx/cmd/buildx@$want_bx")
	echo "$want_bx go=$(go env GOVERSION)" >"$BIN/.buildx-stamp"
fi

# 4. binfmt_misc handlers for emulated RUN steps (qemu-user-static, flags include F).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
	log "mounting binfmt_misc"
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
	name=$(cut -d: -f2 "$conf")
	[ -e "/proc/sys/fs/binfmt_misc/$name" ] && continue
	log "registering binfmt handler $name"
	cat "$conf" >/proc/sys/fs/binfmt_misc/register 2>/dev/null || echo "setup: could not register $name" >&2
done

# 5. The seed image busybox:1 (linux/amd64 + linux/arm64) as an OCI layout, made by BuildKit itself.
if [ ! -f "$SEED/busybox/index.json" ]; then
	log "building the seed image busybox:1 with BuildKit"
	work=$(mktemp -d /tmp/manifold-seed.XXXXXX)
	cat >"$SEED/Dockerfile" <<'DOCKERFILE'
FROM scratch
ARG TARGETARCH
COPY rootfs-${TARGETARCH}/ /
CMD ["sh"]
DOCKERFILE
	printf '[worker.oci]\n  enabled = true\n  gc = false\n[worker.containerd]\n  enabled = false\n' >"$work/buildkitd.toml"
	"$BIN/buildkitd" --root "$work/root" --addr "unix://$work/bk.sock" --config "$work/buildkitd.toml" >"$work/buildkitd.log" 2>&1 &
	bkpid=$!
	trap 'kill $bkpid 2>/dev/null || true; wait $bkpid 2>/dev/null || true; rm -rf "$work"' EXIT
	for _ in $(seq 1 100); do "$BIN/buildctl" --addr "unix://$work/bk.sock" debug workers >/dev/null 2>&1 && break; sleep 0.1; done
	rm -rf "$SEED/busybox.tmp"
	"$BIN/buildctl" --addr "unix://$work/bk.sock" build --progress=plain \
		--frontend dockerfile.v0 --local context="$SEED" --local dockerfile="$SEED" \
		--opt platform=linux/amd64,linux/arm64 \
		--output "type=oci,dest=$SEED/busybox.tmp,tar=false,oci-mediatypes=true,name=docker.io/library/busybox:1" 2>"$work/build.log" ||
		{ cat "$work/build.log" >&2; exit 1; }
	mv "$SEED/busybox.tmp" "$SEED/busybox"
	kill $bkpid; wait $bkpid 2>/dev/null || true
	rm -rf "$work"; trap - EXIT
fi
log "setup done"
