#!/usr/bin/env bash
# Set up a Debian 12 host for flwd, build and install it under /usr/local,
# and run the demo job.
#
# Installs the packages, configures Podman for root and the rootless test
# user, imports the test image localhost/flwd-busybox:latest, builds in
# build/ and installs with `meson install`. Running it again only rebuilds
# what changed. Must run as root.
set -euo pipefail

top=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly top
readonly scripts=$top/scripts
readonly prefix=/usr/local
readonly rootless_user=flwdtest
# The same options as the default pass of scripts/test.sh, so that both
# scripts share build/ without reconfiguring it.
readonly build_options=(-Dwarning_level=2 -Dwerror=true "-Dprefix=$prefix")
readonly demo_jobs_dir=examples/jobs
readonly demo_job=demo-container

usage() {
    cat <<EOF
Usage: $0 [--no-install]

Sets up the host, builds flwd in build/, installs it under $prefix and
runs the demo: flwd --jobs $demo_jobs_dir $demo_job --name Alice

  --no-install  do not run scripts/install-deps.sh
  -h, --help    show this help

Must run as root.
EOF
}

log() {
    printf 'setup: %s\n' "$*"
}

die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

# Print the value of meson option NAME in build/ as a string.
meson_option_value() {
    meson introspect "$top/build" --buildoptions |
        jq -r --arg name "$1" '.[] | select(.name == $name) | .value | tostring'
}

configure_build() {
    local option name stale=()

    if [[ ! -f $top/build/meson-private/coredata.dat ]]; then
        meson setup "$top/build" "$top" "${build_options[@]}"
        return
    fi
    for option in "${build_options[@]}"; do
        name=${option#-D}
        name=${name%%=*}
        if [[ $(meson_option_value "$name") != "${option#*=}" ]]; then
            stale+=("$option")
        fi
    done
    if ((${#stale[@]} > 0)); then
        log "reconfiguring build/: ${stale[*]}"
        meson configure "$top/build" "${stale[@]}"
    fi
}

install=true
while (($# > 0)); do
    case $1 in
    --no-install) install=false ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
    shift
done

if ((EUID != 0)); then
    die "setup.sh must run as root because it installs packages and configures the host; run: sudo $0"
fi
cd -- "$top"

if [[ $install == true ]]; then
    bash "$scripts/install-deps.sh"
fi
bash "$scripts/host-setup.sh"
bash "$scripts/build-image.sh" --root --rootless "$rootless_user"

if [[ ! -f $top/meson.build ]]; then
    die "meson.build not found in $top; run this script from a flwd checkout"
fi
log "building flwd in build/"
configure_build
meson compile -C "$top/build"
log "installing flwd under $prefix"
meson install -C "$top/build"
# The dynamic linker finds a shared library newly installed under $prefix
# only after ldconfig rebuilds its cache.
ldconfig

flwd=$prefix/bin/flwd
if [[ ! -x $flwd ]]; then
    die "$flwd not found after meson install; check the install targets in meson.build"
fi
if [[ ! -f $demo_jobs_dir/$demo_job.yaml ]]; then
    die "demo job $top/$demo_jobs_dir/$demo_job.yaml not found"
fi
log "running the demo: $flwd --jobs $demo_jobs_dir $demo_job --name Alice"
"$flwd" --jobs "$demo_jobs_dir" "$demo_job" --name Alice
log "done; flwd is installed as $flwd"
