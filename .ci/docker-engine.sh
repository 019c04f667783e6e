#!/usr/bin/env bash
# Make a Docker engine reachable for the lab (molecule, playbooks/lab.yml) and
# make sure debootstrap is there for tools/node-image/build.sh.
#
# If `docker info` answers, the engine is used as it is. Otherwise, on Debian
# as root: install docker.io when dockerd is missing, start dockerd in the
# background (logging to /var/log/dockerd.log) and wait for it. CI machines
# without systemd run it this way; where systemd runs, start docker.service.
set -euo pipefail

# Seconds to wait for the engine to answer (override for slow machines).
readonly WAIT_SECONDS="${DOCKER_ENGINE_WAIT_SECONDS:-60}"
readonly DOCKERD_LOG=/var/log/dockerd.log

die() {
  echo "docker-engine.sh: ERROR: $*" >&2
  exit 1
}

is_root() {
  [ "$(id -u)" -eq 0 ]
}

is_debian() {
  [ -r /etc/debian_version ] && command -v apt-get >/dev/null
}

apt_updated=false
apt_install() {
  is_root || die "cannot install $* : not root (run this script as root)"
  is_debian || die "cannot install $* : not a Debian system; install it by hand"
  if ! $apt_updated; then
    apt-get -q update >/dev/null
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -q -y install "$@" >/dev/null
}

[[ "$WAIT_SECONDS" =~ ^[0-9]+$ ]] || die "DOCKER_ENGINE_WAIT_SECONDS must be a number of seconds, not '$WAIT_SECONDS'"

engine_answers() {
  docker info >/dev/null 2>&1
}

# debootstrap builds the node image; wanted whether or not dockerd was running.
if ! command -v debootstrap >/dev/null; then
  echo "Installing debootstrap"
  apt_install debootstrap
fi

if command -v docker >/dev/null && engine_answers; then
  echo "Docker engine answers: $(docker version --format 'server {{ .Server.Version }}')"
  exit 0
fi

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
  echo "Installing docker.io"
  apt_install docker.io
fi

is_root || die "no Docker engine answers and only root can start dockerd here"
if pgrep -x dockerd >/dev/null 2>&1; then
  echo "dockerd is running but does not answer yet; waiting"
else
  echo "Starting dockerd (log: $DOCKERD_LOG)"
  setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
fi

for ((waited = 0; waited < WAIT_SECONDS; waited++)); do
  if engine_answers; then
    echo "Docker engine answers after ${waited}s: $(docker version --format 'server {{ .Server.Version }}')"
    exit 0
  fi
  sleep 1
done

echo "---- last lines of $DOCKERD_LOG ----" >&2
tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
die "the Docker engine did not answer 'docker info' within ${WAIT_SECONDS}s (see $DOCKERD_LOG)"
