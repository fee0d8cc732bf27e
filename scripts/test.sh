#!/usr/bin/env bash
# Build flwd and run its test suites: the full suite in build/, the full
# suite with AddressSanitizer and UndefinedBehaviorSanitizer in build-asan/,
# and the integration suite as the unprivileged user flwdtest against
# rootless Podman.
#
# Before the passes it installs the packages, configures the host, imports
# the test image and starts dockerd and the test registry, which it stops
# again on exit. The last line of output is "N passed, N failed", summed
# over all passes. The exit status is 1 when any pass failed.
set -euo pipefail

top=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly top
readonly scripts=$top/scripts
readonly rootless_user=flwdtest
# Directory of the rootless pass, owned by the rootless user. It contains
# that pass's build directory and, when the user cannot read the checkout,
# a copy of it. It is outside the checkout because that user cannot write
# there.
rootless_dir=${FLWD_ROOTLESS_DIR:-/tmp/flwd-rootless}
readonly rootless_dir

readonly default_options=(-Dwarning_level=2 -Dwerror=true)
readonly asan_options=('-Db_sanitize=address,undefined' -Db_lundef=false)
# Tests built with AddressSanitizer run slower, roughly twofold (an
# estimate), so the sanitizer pass allows three times the timeouts.
readonly asan_timeout_multiplier=3

usage() {
    cat <<EOF
Usage: $0 [--quick] [--no-install]

Runs the flwd test passes and prints "N passed, N failed" as the last line.

  --quick       run only the plain build's pass, without the sanitizer
                and rootless passes
  --no-install  do not run scripts/install-deps.sh
  -h, --help    show this help

Environment passed to the tests (defaults in brackets):
  FLWD_TEST_RUNTIMES  container engines to test, comma-separated
                      [podman,docker when dockerd responds, else podman;
                      always podman in the rootless pass]
  FLWD_TEST_REGISTRY  test registry address [127.0.0.1:5000]
  FLWD_TEST_IMAGE     test image [localhost/flwd-busybox:latest]
  FLWD_ROOTLESS_DIR   directory for the rootless pass's build and, if
                      needed, its copy of the checkout [/tmp/flwd-rootless]

Must run as root.
EOF
}

log() {
    printf 'test: %s\n' "$*"
}

die() {
    printf 'test: error: %s\n' "$*" >&2
    exit 1
}

banner() {
    printf '\n==== %s ====\n' "$*"
}

# Counterpart of run_as_test_user for configure_build, which takes the
# runner's name.
# shellcheck disable=SC2317
run_as_root() {
    "$@"
}

# Run a command as the rootless test user, in that user's home directory
# and with a clean environment. Leading NAME=VALUE arguments are added to
# that environment.
run_as_test_user() {
    local uid home
    uid=$(id -u "$rootless_user")
    home=$(getent passwd "$rootless_user" | cut -d: -f6)
    runuser -u "$rootless_user" -- env -i --chdir="$home" \
        PATH=/usr/local/bin:/usr/bin:/bin \
        HOME="$home" USER="$rootless_user" LOGNAME="$rootless_user" \
        XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 \
        "$@"
}

# Print the value of meson option NAME in BUILD_DIR as a string.
meson_option_value() {
    local build_dir=$1 name=$2
    meson introspect "$build_dir" --buildoptions |
        jq -r --arg name "$name" '.[] | select(.name == $name)
            | .value | if type == "array" then join(",") else tostring end'
}

# Configure BUILD_DIR for SOURCE_DIR with OPTIONS (-Dname=value), running
# meson through RUNNER (run_as_root or run_as_test_user). An existing build
# directory is kept and only reconfigured when an option differs, so
# repeated runs rebuild incrementally.
configure_build() {
    local runner=$1 build_dir=$2 source_dir=$3
    shift 3
    local option name value stale=()

    if [[ ! -f $build_dir/meson-private/coredata.dat ]]; then
        "$runner" meson setup "$build_dir" "$source_dir" "$@"
        return
    fi
    for option in "$@"; do
        name=${option#-D}
        name=${name%%=*}
        value=${option#*=}
        if [[ $(meson_option_value "$build_dir" "$name") != "$value" ]]; then
            stale+=("$option")
        fi
    done
    if ((${#stale[@]} > 0)); then
        log "reconfiguring $build_dir: ${stale[*]}"
        "$runner" meson configure "$build_dir" "${stale[@]}"
    fi
}

# Per-pass results, in run order, for the closing summary.
pass_names=()
pass_passed=()
pass_failed=()
pass_notes=()

record_pass() {
    pass_names+=("$1")
    pass_passed+=("$2")
    pass_failed+=("$3")
    pass_notes+=("$4")
}

# Print the count after LABEL (such as "Ok" or "Unexpected Pass") in the
# summary that `meson test` writes at its end, or 0 when there is none.
summary_count() {
    local log_file=$1 label=$2
    local count
    count=$(grep -E "^${label}:[[:space:]]+[0-9]+[[:space:]]*$" -- "$log_file" |
        tail -n 1 | awk '{print $NF}')
    printf '%s\n' "${count:-0}"
}

# Run `meson test` (the command after NAME and LOG_FILE), copy its output to
# LOG_FILE and record the counts of its summary as pass NAME. A run that
# fails without any failed test in its summary (meson itself failed, or a
# build step inside it) is recorded as one failure, so that it shows in the
# totals.
run_meson_test() {
    local name=$1 log_file=$2
    shift 2
    local status passed failed

    set +e
    "$@" 2>&1 | tee -- "$log_file"
    status=${PIPESTATUS[0]}
    set -e

    passed=$(summary_count "$log_file" Ok)
    failed=$(($(summary_count "$log_file" Fail) +
        $(summary_count "$log_file" 'Unexpected Pass') +
        $(summary_count "$log_file" Timeout)))
    if ((status != 0 && failed == 0)); then
        record_pass "$name" "$passed" 1 "meson test exited with status $status"
    elif ((status != 0)); then
        record_pass "$name" "$passed" "$failed" "meson test exited with status $status"
    else
        record_pass "$name" "$passed" "$failed" ""
    fi
}

run_default_pass() {
    banner "pass default: build/"
    if ! configure_build run_as_root "$top/build" "$top" "${default_options[@]}" ||
        ! meson compile -C "$top/build"; then
        record_pass default 0 1 "configuring or compiling build/ failed"
        return
    fi
    run_meson_test default "$log_dir/default.log" \
        meson test -C "$top/build" --print-errorlogs
}

run_asan_pass() {
    banner "pass asan: build-asan/ (AddressSanitizer, UndefinedBehaviorSanitizer)"
    if ! configure_build run_as_root "$top/build-asan" "$top" "${asan_options[@]}" ||
        ! meson compile -C "$top/build-asan"; then
        record_pass asan 0 1 "configuring or compiling build-asan/ failed"
        return
    fi
    run_meson_test asan "$log_dir/asan.log" \
        env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        meson test -C "$top/build-asan" --print-errorlogs --no-suite valgrind \
        --timeout-multiplier "$asan_timeout_multiplier"
}

# Build the libFuzzer targets with clang and run each for a short while.
# A crash, a leak or a sanitizer report fails the pass.
run_fuzz_pass() {
    banner "pass fuzz: libFuzzer targets, ${fuzz_seconds} s each"
    local target failed=0 passed=0
    if ! FLWD_FUZZ_BUILD="$top/build-fuzz" "$top/tests/fuzz/run-fuzz.sh" 0 \
        >"$log_dir/fuzz-build.log" 2>&1; then
        record_pass fuzz 0 1 "building the fuzz targets failed; see $log_dir/fuzz-build.log"
        return
    fi
    for target in spec args; do
        local corpus
        corpus=$(mktemp -d)
        cp "$top/tests/fuzz/corpus/$target"/* "$corpus"/
        if "$top/build-fuzz/tests/fuzz/fuzz_$target" -max_total_time="$fuzz_seconds" \
            -max_len=4096 "$corpus" >"$log_dir/fuzz-$target.log" 2>&1; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            tail -n 30 "$log_dir/fuzz-$target.log" >&2
        fi
        rm -rf -- "$corpus"
    done
    record_pass fuzz "$passed" "$failed" ""
}

# Succeed when the rootless user can read every file of the checkout
# outside .git.
checkout_readable_by_test_user() {
    local unreadable
    unreadable=$(run_as_test_user find "$top" -path "$top/.git" -prune \
        -o ! -readable -print -quit 2>/dev/null) || return 1
    [[ -z $unreadable ]]
}

# Write the checkout's files to stdout as a tar stream. In a git work tree
# these are the tracked and the untracked but not ignored files. Meson
# build directories, recognized by their meson-private directory, are left
# out in both cases.
tar_checkout() {
    local path top_dir
    if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$top" ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' path; do
                # Deleted but still tracked files are not in the work tree.
                [[ -e $top/$path || -L $top/$path ]] || continue
                top_dir=${path%%/*}
                if [[ $top_dir != "$path" && -d $top/$top_dir/meson-private ]]; then
                    continue
                fi
                printf '%s\0' "$path"
            done |
            tar -C "$top" --null --no-recursion -T - -cf -
    else
        tar -C "$top" --exclude=./.git --exclude-tag-all=meson-private -cf - .
    fi
}

# Create the rootless pass's directory, or check that an existing one is a
# real directory of the rootless user, because root later runs commands
# that write into it.
prepare_rootless_dir() {
    if [[ ! -e $rootless_dir && ! -L $rootless_dir ]]; then
        mkdir -m 0755 -- "$rootless_dir"
        chown -- "$rootless_user:" "$rootless_dir"
        return
    fi
    if [[ -L $rootless_dir || ! -d $rootless_dir ]] ||
        [[ $(stat -c '%U' -- "$rootless_dir") != "$rootless_user" ]]; then
        die "$rootless_dir exists but is not a directory owned by $rootless_user; remove it or set FLWD_ROOTLESS_DIR"
    fi
}

run_rootless_pass() {
    local source_dir build_dir=$rootless_dir/build configured_source

    banner "pass rootless: integration suite as $rootless_user"
    prepare_rootless_dir

    if checkout_readable_by_test_user; then
        source_dir=$top
    else
        source_dir=$rootless_dir/src
        log "$rootless_user cannot read $top; copying the checkout to $source_dir"
        # Removing and extracting as the user keeps root from following
        # links that the user may have placed there. tar keeps the files'
        # modification times, so the next compile stays incremental.
        run_as_test_user rm -rf -- "$source_dir"
        run_as_test_user mkdir -- "$source_dir"
        tar_checkout | run_as_test_user tar -C "$source_dir" -xf -
    fi

    # A build directory belongs to one source directory. It changes when
    # the checkout becomes readable or unreadable between runs.
    if [[ -f $build_dir/meson-info/meson-info.json ]]; then
        configured_source=$(jq -r .directories.source "$build_dir/meson-info/meson-info.json")
        if [[ $configured_source != "$source_dir" ]]; then
            log "removing $build_dir, which was configured for $configured_source"
            run_as_test_user rm -rf -- "$build_dir"
        fi
    fi

    if ! configure_build run_as_test_user "$build_dir" "$source_dir" "${default_options[@]}" ||
        ! run_as_test_user meson compile -C "$build_dir"; then
        record_pass rootless 0 1 "configuring or compiling $build_dir failed"
        return
    fi
    run_meson_test rootless "$log_dir/rootless.log" \
        run_as_test_user \
        FLWD_TEST_RUNTIMES=podman \
        FLWD_TEST_REGISTRY="$FLWD_TEST_REGISTRY" \
        FLWD_TEST_IMAGE="$FLWD_TEST_IMAGE" \
        meson test -C "$build_dir" --suite integration --print-errorlogs
}

print_summary() {
    local i total_passed=0 total_failed=0 line

    banner "summary"
    for i in "${!pass_names[@]}"; do
        line="pass ${pass_names[i]}: ${pass_passed[i]} ok, ${pass_failed[i]} failing"
        if [[ -n ${pass_notes[i]} ]]; then
            line+=" (${pass_notes[i]})"
        fi
        log "$line"
        total_passed=$((total_passed + pass_passed[i]))
        total_failed=$((total_failed + pass_failed[i]))
    done
    log "output of each pass: $log_dir"
    printf '%d passed, %d failed\n' "$total_passed" "$total_failed"
    ((total_failed == 0))
}

quick=false
fuzz_seconds=${FLWD_FUZZ_SECONDS:-30}
install=true
while (($# > 0)); do
    case $1 in
    --quick) quick=true ;;
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
    die "test.sh must run as root because it configures the host and starts daemons; run: sudo $0"
fi
if [[ ! -f $top/meson.build ]]; then
    die "meson.build not found in $top; run this script from a flwd checkout"
fi
cd -- "$top"

banner "host set-up"
if [[ $install == true ]]; then
    bash "$scripts/install-deps.sh"
fi
bash "$scripts/host-setup.sh"
bash "$scripts/build-image.sh" --root --rootless "$rootless_user"

# Bash runs the EXIT trap on `exit`, so SIGINT and SIGTERM are turned into
# exits and the services are stopped on every path.
trap 'bash "$scripts/services.sh" stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bash "$scripts/services.sh" start

if timeout 20 docker info >/dev/null 2>&1; then
    bash "$scripts/build-image.sh" --docker
    default_runtimes=podman,docker
else
    log "docker info failed; testing Podman only"
    default_runtimes=podman
fi
export FLWD_TEST_RUNTIMES=${FLWD_TEST_RUNTIMES:-$default_runtimes}
export FLWD_TEST_REGISTRY=${FLWD_TEST_REGISTRY:-127.0.0.1:5000}
export FLWD_TEST_IMAGE=${FLWD_TEST_IMAGE:-localhost/flwd-busybox:latest}
log "FLWD_TEST_RUNTIMES=$FLWD_TEST_RUNTIMES FLWD_TEST_REGISTRY=$FLWD_TEST_REGISTRY FLWD_TEST_IMAGE=$FLWD_TEST_IMAGE"

log_dir=$(mktemp -d /tmp/flwd-test-logs.XXXXXX)
chmod 0755 -- "$log_dir"

run_default_pass
if [[ $quick == false ]]; then
    run_asan_pass
    run_fuzz_pass
    run_rootless_pass
else
    log "--quick: skipping the sanitizer and rootless passes"
fi

# Stop the services before the summary, so that the totals line stays the
# last line of output.
trap - EXIT
if ! bash "$scripts/services.sh" stop; then
    log "warning: stopping the services failed; check with: bash scripts/services.sh status"
fi

if print_summary; then
    exit 0
fi
exit 1
