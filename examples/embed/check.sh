#!/usr/bin/env bash
# Check that a program outside the flwd build can embed an installed
# libflwd: configure and install flwd from SOURCE_DIR into a temporary
# prefix, build examples/embed with its Makefile through pkg-config, and
# run the demo job through it.
#
# Usage: check.sh [SOURCE_DIR]
#
# SOURCE_DIR defaults to the checkout that contains this script; the
# example and the demo job always come from this script's checkout. The run
# needs a usable Podman or Docker (FLWD_RUNTIME picks one, as for flwd)
# with the image localhost/flwd-busybox:latest, which scripts/setup.sh
# imports. Exit status: 0 when every step passed, 1 when a step failed,
# 77 (the skip status of meson and automake) when the runtime or the image
# is missing. Everything is built in a temporary directory that is removed
# on exit.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly here
source_dir=$(cd -- "${1:-$here/../..}" && pwd)
readonly source_dir
readonly image=localhost/flwd-busybox:latest
readonly job_file=$here/../jobs/demo-container.yaml

log() {
    printf 'embed-check: %s\n' "$*"
}

fail() {
    printf 'embed-check: FAIL: %s\n' "$*" >&2
    exit 1
}

skip() {
    printf 'embed-check: SKIP: %s\n' "$*" >&2
    exit 77
}

# Print the tail of LOG_FILE and fail with MESSAGE.
fail_with_log() {
    local log_file=$1 message=$2
    tail -n 40 -- "$log_file" >&2 || true
    fail "$message (full output above, last 40 lines)"
}

# Succeed when the runtime that flwd would choose has the demo image.
image_present() {
    local runtime=${FLWD_RUNTIME:-auto}
    if [[ $runtime == auto ]]; then
        if command -v "${FLWD_PODMAN:-podman}" >/dev/null; then
            runtime=podman
        else
            runtime=docker
        fi
    fi
    # A runtime stuck on a lock would hang the check, so bound the query.
    case $runtime in
    podman) timeout 60 "${FLWD_PODMAN:-podman}" image exists "$image" ;;
    docker) timeout 60 "${FLWD_DOCKER:-docker}" image inspect "$image" >/dev/null 2>&1 ;;
    *) return 1 ;;
    esac
}

[[ -f $source_dir/meson.build ]] || fail "no meson.build in $source_dir"
[[ -f $job_file ]] || fail "demo job $job_file not found"
for tool in meson ninja make cc pkg-config; do
    command -v "$tool" >/dev/null || fail "$tool not found on PATH"
done
status=0
image_present || status=$?
if ((status == 124)); then
    fail "the container runtime did not answer within 60 s; check 'podman ps' or 'docker ps'"
elif ((status != 0)); then
    skip "no container runtime with the image $image; run scripts/setup.sh"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/flwd-embed-check.XXXXXX")
readonly tmp
trap 'rm -rf -- "$tmp"' EXIT
readonly build_dir=$tmp/build
readonly prefix=$tmp/prefix

log "installing flwd from $source_dir into $prefix"
if ! meson setup "$build_dir" "$source_dir" "--prefix=$prefix" -Dtests=false \
    >"$tmp/setup.log" 2>&1; then
    fail_with_log "$tmp/setup.log" "meson setup failed"
fi
if ! meson install -C "$build_dir" >"$tmp/install.log" 2>&1; then
    fail_with_log "$tmp/install.log" "meson install failed"
fi

# Meson installs libraries to a multiarch directory on Debian, such as
# lib/x86_64-linux-gnu, and to lib or lib64 elsewhere, so look it up.
pc_file=$(find "$prefix" -name libflwd.pc -print -quit)
[[ -n $pc_file ]] || fail "meson install left no libflwd.pc under $prefix"
pc_dir=$(dirname -- "$pc_file")
lib_dir=$(PKG_CONFIG_PATH=$pc_dir pkg-config --variable=libdir libflwd)
init_path=$prefix/libexec/flwd/flwd-init
[[ -x $init_path ]] || fail "meson install left no flwd-init at $init_path"

# Build a copy, so that the check writes nothing into the checkout.
log "building examples/embed against $pc_file"
cp -- "$here/embed.c" "$here/Makefile" "$tmp/"
if ! PKG_CONFIG_PATH=$pc_dir make -C "$tmp" embed >"$tmp/make.log" 2>&1; then
    fail_with_log "$tmp/make.log" "building embed.c against the installed libflwd failed"
fi

run_embed() {
    LD_LIBRARY_PATH=$lib_dir FLWD_INIT=$init_path FLWD_STATE_DIR=$tmp/state \
        "$tmp/embed" "$@"
}

log "running the demo job through embed"
status=0
run_embed "$job_file" '{"name":"Alice"}' >"$tmp/run.out" 2>"$tmp/run.err" ||
    status=$?
if ((status != 0)); then
    cat -- "$tmp/run.out" "$tmp/run.err" >&2
    fail "embed exited with status $status for the demo job"
fi
grep -qx 'Hello, Alice' "$tmp/run.out" ||
    fail "the job's output 'Hello, Alice' is missing from embed's stdout"
grep -Eq '^run [0-9a-f]{16}: state succeeded, exit status 0$' "$tmp/run.out" ||
    fail "embed did not print the state line 'run ID: state succeeded, exit status 0'"
grep -q '"type":"run.finished"' "$tmp/run.err" ||
    fail "no run.finished event reached the event callback"

log "checking that invalid arguments are rejected before any run"
status=0
run_embed "$job_file" '{"nosuch":1}' >"$tmp/bad.out" 2>"$tmp/bad.err" ||
    status=$?
((status == 1)) || fail "embed exited with status $status for an unknown argument, expected 1"
grep -q 'args.invalid' "$tmp/bad.err" ||
    fail "the error for an unknown argument does not name args.invalid"

log "ok"
