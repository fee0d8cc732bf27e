#!/usr/bin/env bash
# Benchmark what flwd adds to a container run: a job that runs `true` goes
# through flwd and, interleaved with it, the same container goes through
# the runtime's own `run` with the flags that `flwd plan` prints. Prints
# mean, median and p95 in milliseconds, the ratio flwd / runtime, the
# median difference within each iteration and the peak RSS of the flwd
# process, for Podman and, when `docker info` responds, for Docker.
# bench/measure.py does the timing.
#
# This is a benchmark, not a test: it fails only when a command fails,
# never because of a number.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly here
readonly invocation="$0 $*"

runs=30
warmup=3
rss_runs=5
flwd_bin=$(command -v flwd || true)
image=localhost/flwd-busybox:latest
runtimes=auto
json_dir=

usage() {
    cat <<EOF
Usage: $0 [OPTIONS]

  -n, --runs N        measured iterations per runtime (default $runs)
  -w, --warmup N      discarded iterations before them (default $warmup)
      --rss-runs N    extra flwd runs that sample its peak RSS (default $rss_runs)
      --flwd PATH     flwd binary (default: flwd on PATH)
      --image REF     image of the benchmark job (default $image)
      --runtime LIST  podman, docker or podman,docker (default: podman, and
                      docker too when \`docker info\` responds)
      --json DIR      also write one JSON file of results per runtime to DIR
  -h, --help          show this help

flwd finds its container helper through FLWD_INIT or its compiled-in
default, as usual. With a build tree rather than an install, set
FLWD_INIT=BUILD/libflwd/flwd-init and pass --flwd BUILD/flwd/flwd.
EOF
}

die() {
    printf 'run-bench: error: %s\n' "$*" >&2
    exit 1
}

while (($# > 0)); do
    case $1 in
    -n | --runs) runs=${2:?--runs needs a value}; shift ;;
    -w | --warmup) warmup=${2:?--warmup needs a value}; shift ;;
    --rss-runs) rss_runs=${2:?--rss-runs needs a value}; shift ;;
    --flwd) flwd_bin=${2:?--flwd needs a value}; shift ;;
    --image) image=${2:?--image needs a value}; shift ;;
    --runtime) runtimes=${2:?--runtime needs a value}; shift ;;
    --json) json_dir=${2:?--json needs a value}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

[[ -n $flwd_bin ]] || die "flwd not found on PATH; pass --flwd PATH"
flwd_bin=$(realpath -- "$flwd_bin")
[[ -x $flwd_bin ]] || die "$flwd_bin is not executable"
command -v python3 >/dev/null || die "python3 not found on PATH"

if [[ $runtimes == auto ]]; then
    runtimes=podman
    if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
        runtimes=podman,docker
    else
        printf 'run-bench: docker info failed; measuring Podman only\n'
    fi
fi

tmp=$(mktemp -d /tmp/flwd-bench.XXXXXX)
readonly tmp
readonly jobs_dir=$tmp/jobs
readonly job_id=bench-true

# Removes the temporary directory and any container of the benchmark job
# that an interrupted iteration left behind.
cleanup() {
    local runtime ids
    for runtime in ${runtimes//,/ }; do
        ids=$("$runtime" ps -a -q --filter "label=io.flwd.job-id=$job_id" 2>/dev/null || true)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086 # one argument per container id
            "$runtime" rm -f $ids >/dev/null 2>&1 || true
        fi
    done
    rm -rf -- "$tmp"
}
trap cleanup EXIT

mkdir -- "$jobs_dir"
cat >"$jobs_dir/$job_id.yaml" <<EOF
id: $job_id
description: Runs true, so that only the cost of starting a container remains.
executor: container
interpreter: "container:$image"
command: ["true"]
EOF

flwd_version=$("$flwd_bin" --version) || die "$flwd_bin --version failed"
# shellcheck source=/dev/null
os_name=$(. /etc/os-release && printf '%s' "$PRETTY_NAME")
printf 'host: %s, %s cores, kernel %s\n' "$os_name" "$(nproc)" "$(uname -r)"
printf 'flwd: %s (%s)\n' "$flwd_version" "$flwd_bin"
printf 'command: %s\n' "$invocation"
printf 'measuring: %s runs after %s warm-ups, runtimes %s\n\n' "$runs" "$warmup" "$runtimes"

for runtime in ${runtimes//,/ }; do
    case $runtime in
    podman) "$runtime" --version ;;
    docker) printf 'docker server %s\n' "$(docker version --format '{{.Server.Version}}')" ;;
    *) die "unknown runtime '$runtime': use podman or docker" ;;
    esac
    if ! "$runtime" image inspect "$image" >/dev/null 2>&1; then
        die "$runtime has no image $image; run scripts/setup.sh or pass --image"
    fi
    state_dir=$tmp/state-$runtime
    mkdir -- "$state_dir"
    measure_args=(--flwd "$flwd_bin" --runtime "$runtime" --jobs "$jobs_dir"
        --job "$job_id" --state-dir "$state_dir" --runs "$runs"
        --warmup "$warmup" --rss-runs "$rss_runs")
    if [[ -n $json_dir ]]; then
        mkdir -p -- "$json_dir"
        measure_args+=(--json "$json_dir/$runtime.json")
    fi
    python3 "$here/measure.py" "${measure_args[@]}"
    printf '\n'
done
