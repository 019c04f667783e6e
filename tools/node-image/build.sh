#!/usr/bin/env bash
# Build the lab node image fleetscale/node:bookworm from the Debian archive.
#
# No registry is reachable from the lab machine, so the image is bootstrapped
# with debootstrap and imported. It boots systemd as PID 1 and carries, in its
# apt cache, every Debian package the roles install (packages.txt), so nodes
# install them without downloading. The image is labelled with a hash of this
# recipe (build.sh, packages.txt, base-packages.txt); an image with the same
# hash is reused, a different hash triggers a rebuild.
#
# Usage: tools/node-image/build.sh [--force]
# Machines that can pull debian:bookworm can use the Dockerfile next to this
# script instead (same packages, same apt settings).
# `docker import` cannot set STOPSIGNAL: containers stop systemd with
# SIGRTMIN+3 themselves (stop_signal in playbooks/lab.yml).
set -euo pipefail

readonly IMAGE="fleetscale/node:bookworm"
readonly SUITE="bookworm"
readonly RECIPE_LABEL="org.fleetscale.node.recipe"
# debootstrap keeps the base system's .deb files here between builds.
readonly DEBOOTSTRAP_CACHE="/var/cache/fleetscale-node-image/debootstrap"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here
rootfs=""
build_started=$SECONDS
step_started=$SECONDS

die() {
  echo "build.sh: ERROR: $*" >&2
  exit 1
}

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# Print how long the step that just finished took, and start the next one.
step() {
  local now=$SECONDS
  if [ -n "${current_step:-}" ]; then
    printf '  [%4ds] %s\n' "$((now - step_started))" "$current_step"
  fi
  current_step="$1"
  step_started=$now
  [ -z "$1" ] || echo "==> $1"
}

# Names from a package list, comments and blank lines dropped; every name is
# checked so that a typo fails here and not halfway through apt.
read_list() {
  local file="$1" name
  local -n names="$2"
  [ -r "$file" ] || die "package list $file is missing"
  mapfile -t names < <(awk '{ sub(/#.*/, ""); for (i = 1; i <= NF; i++) print $i }' "$file")
  [ "${#names[@]}" -gt 0 ] || die "$file lists no package"
  for name in "${names[@]}"; do
    [[ "$name" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "$file: '$name' is not a Debian package name"
  done
}

cleanup() {
  [ -n "$rootfs" ] || return 0
  # debootstrap mounts /proc and /sys in the target; never delete through a mount.
  local mnt
  awk -v r="$rootfs" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r mnt; do
    umount -l "$mnt" || true
  done
  rm -rf --one-file-system "$rootfs"
}

force=false
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=true ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap and chroot need it"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap, or run .ci/docker-engine.sh)"
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info' (run .ci/docker-engine.sh)"

recipe_hash=$(cat "$here/build.sh" "$here/packages.txt" "$here/base-packages.txt" | sha256sum | cut -d' ' -f1)
old_image_id=""
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  old_image_id=$(docker image inspect --format '{{ .Id }}' "$IMAGE")
  built_from=$(docker image inspect --format "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$IMAGE" 2>/dev/null || true)
  if [ "$built_from" = "$recipe_hash" ] && ! $force; then
    echo "$IMAGE is up to date (recipe ${recipe_hash:0:12}); use --force to rebuild"
    exit 0
  fi
  echo "$IMAGE exists but was built from recipe '${built_from:0:12}' (now ${recipe_hash:0:12}) or --force: rebuilding"
fi

base_packages=()
cached_packages=()
read_list "$here/base-packages.txt" base_packages
read_list "$here/packages.txt" cached_packages

trap cleanup EXIT
mkdir -p "$DEBOOTSTRAP_CACHE"
rootfs=$(mktemp -d /var/tmp/fleetscale-node-rootfs.XXXXXX)
# mktemp makes the directory 0700; it becomes the image's "/", which every
# service account (www-data, mysql, _apt, ...) has to traverse.
chmod 0755 "$rootfs"

step "debootstrap $SUITE (minbase + ${#base_packages[@]} packages) into $rootfs"
include=$(IFS=,; echo "${base_packages[*]}")
debootstrap --variant=minbase --cache-dir="$DEBOOTSTRAP_CACHE" --include="$include" "$SUITE" "$rootfs" >/dev/null \
  || die "debootstrap failed (see $rootfs/debootstrap/debootstrap.log)"

step "apt settings: no service starts during the build, downloaded packages are kept"
# policy-rc.d (exit 101 = action forbidden) stops maintainer scripts from
# starting services in the chroot; it is removed again before the import.
printf '#!/bin/sh\n# Build-time only: forbid service starts in the chroot.\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
# Nodes must install from the cache built below: keep every .deb that apt
# downloads and never clean the archive directory.
rm -f "$rootfs/etc/apt/apt.conf.d/docker-clean"
cat >"$rootfs/etc/apt/apt.conf.d/90fleetscale-keep-archives" <<'EOF'
// fleetscale node image: the roles' packages are pre-downloaded into
// /var/cache/apt/archives; keep them (and anything apt downloads later).
Binary::apt::APT::Keep-Downloaded-Packages "true";
APT::Keep-Downloaded-Packages "true";
APT::Periodic::AutocleanInterval "0";
APT::Periodic::Unattended-Upgrade "0";
EOF

step "apt-get update in the chroot"
chroot "$rootfs" apt-get -q update >/dev/null

step "apt-get install --download-only ${#cached_packages[@]} packages (with dependencies and recommends)"
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive \
  apt-get -q -y --download-only install "${cached_packages[@]}" >/dev/null
debs=$(find "$rootfs/var/cache/apt/archives" -maxdepth 1 -name '*.deb' | wc -l)
[ "$debs" -gt 0 ] || die "no .deb landed in the apt cache"
echo "  $debs .deb files cached ($(du -sh "$rootfs/var/cache/apt/archives" | cut -f1))"

step "systemd in a container: mask hardware and console units, container identity"
# Units that need hardware, a console or kernel privileges a container lacks;
# masked so that `systemctl is-system-running` reaches running/degraded fast.
for unit in \
  getty@.service serial-getty@.service console-getty.service getty.target getty-static.service \
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service \
  systemd-resolved.service systemd-timesyncd.service systemd-networkd-wait-online.service \
  systemd-remount-fs.service systemd-modules-load.service kmod-static-nodes.service \
  systemd-firstboot.service systemd-journald-audit.socket \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
  ln -sfn /dev/null "$rootfs/etc/systemd/system/$unit"
done
# Docker bind-mounts /etc/hostname, /etc/hosts and /etc/resolv.conf into each
# container (hostname = container name); the image only carries placeholders
# and no copy of the build machine's resolver or identity.
echo "fleetscale-node" >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
: >"$rootfs/etc/resolv.conf"
# An empty machine-id makes systemd generate one per container at boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
rm -f "$rootfs/usr/sbin/policy-rc.d"

step "import as $IMAGE"
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  --change "LABEL $RECIPE_LABEL=$recipe_hash" \
  --change 'LABEL org.fleetscale.node.suite=bookworm' \
  - "$IMAGE" >/dev/null
step ""

new_image_id=$(docker image inspect --format '{{ .Id }}' "$IMAGE")
if [ -n "$old_image_id" ] && [ "$old_image_id" != "$new_image_id" ]; then
  # The previous build is now untagged; drop it unless a container still uses it.
  docker image rm "$old_image_id" >/dev/null 2>&1 || echo "  (previous image ${old_image_id:7:12} kept: still in use)"
fi
size=$(docker image inspect --format '{{ .Size }}' "$IMAGE")
printf '%s built in %ds: %s, %d MB, recipe %s\n' "$IMAGE" "$((SECONDS - build_started))" \
  "${new_image_id:7:12}" "$((size / 1000000))" "${recipe_hash:0:12}"
