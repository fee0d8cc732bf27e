#!/usr/bin/env bash
# Install the Debian 12 packages that building and testing flwd need.
#
# Runs apt-get only when at least one package is missing, so a repeat run
# takes well under a second and works without network access.
set -euo pipefail

# Build: compiler, meson and the libraries libflwd links against.
# Containers: Podman (with runc, because crun fails on cgroups v1 hybrid
# hosts), its rootless helpers, Docker and a local registry for pull tests.
# Tests: busybox-static for the offline test image, check for unit tests,
# clang with libclang-rt for libFuzzer, valgrind, wrk and hyperfine for
# benchmarks, curl and jq for talking to the registry.
packages=(
    gcc
    clang
    libclang-rt-14-dev
    meson
    ninja-build
    pkg-config
    libyaml-dev
    libjson-c-dev
    libevent-dev
    libsqlite3-dev
    check
    valgrind
    podman
    runc
    conmon
    catatonit
    golang-github-containers-common
    containernetworking-plugins
    uidmap
    slirp4netns
    fuse-overlayfs
    iptables
    docker.io
    docker-registry
    busybox-static
    wrk
    hyperfine
    python3
    git
    curl
    jq
)

log() {
    printf 'install-deps: %s\n' "$*"
}

die() {
    printf 'install-deps: error: %s\n' "$*" >&2
    exit 1
}

is_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ $status == "install ok installed" ]]
}

missing=()
for package in "${packages[@]}"; do
    if ! is_installed "$package"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    log "all ${#packages[@]} packages are already installed"
    exit 0
fi

log "missing packages: ${missing[*]}"
if ((EUID != 0)); then
    die "installing packages requires root; run: sudo $0"
fi

# The docker.io and docker-registry packages start their daemons from their
# maintainer scripts when invoke-rc.d allows it. Those daemons would run with
# the distribution's settings (a registry with htpasswd auth on port 5000,
# dockerd with iptables), which collide with scripts/services.sh. A
# policy-rc.d that exits 101 forbids the starts for the duration of the
# install. An existing policy-rc.d is left as it is.
policy_file=/usr/sbin/policy-rc.d
created_policy=false
remove_policy() {
    if [[ $created_policy == true ]]; then
        rm -f -- "$policy_file"
    fi
}
trap remove_policy EXIT
if [[ ! -e $policy_file ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_file"
    chmod 0755 "$policy_file"
    created_policy=true
fi

export DEBIAN_FRONTEND=noninteractive
log "running apt-get update"
apt-get update
log "installing ${#missing[@]} packages"
apt-get install -y --no-install-recommends "${missing[@]}"

still_missing=()
for package in "${missing[@]}"; do
    if ! is_installed "$package"; then
        still_missing+=("$package")
    fi
done
if ((${#still_missing[@]} > 0)); then
    die "apt-get finished but these packages are still not installed: ${still_missing[*]}"
fi
log "done"
