#!/usr/bin/env bash
# Benchmark flwd-httpd against the Podman API service on this machine.
#
# wrk sends GET requests with the same duration, threads and connections
# to flwd-httpd (GET /healthz and GET /runs/ID of a finished run) and to
# `podman system service` (GET /_ping and GET /v4.0.0/libpod/containers/json),
# both on 127.0.0.1, one after another. Then it measures the time from
# POST /runs to the run's state being "running" (GET /runs/ID polled every
# 5 ms) for a job that sleeps, and cancels each run. Prints a Markdown
# report: requests/s, latency p50 and p99, the ratios, and the median.
#
# This is a benchmark, not a test: it fails only when a command fails.
# Everything it starts listens on 127.0.0.1 and stops on exit.
set -euo pipefail

top=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly top

httpd=$top/build/flwd-httpd/flwd-httpd
init=$top/build/libflwd/flwd-init
image=localhost/flwd-busybox:latest
duration=10s
threads=2
connections=16
start_runs=10

usage() {
    cat <<EOF
Usage: $0 [OPTIONS]

  --httpd PATH         flwd-httpd binary (default: $httpd)
  --init PATH          flwd-init helper (default: $init)
  --image REF          image of the benchmark jobs (default: $image)
  --duration D         wrk duration per endpoint, such as 10s (default: $duration)
  --threads N          wrk threads (default: $threads)
  --connections N      wrk connections (default: $connections)
  --start-runs N       runs timed from POST to running (default: $start_runs)
  -h, --help           show this help

Needs wrk, podman, curl and python3. Uses root's or the calling user's
Podman, whichever runs the script.
EOF
}

die() {
    printf 'httpd-bench: error: %s\n' "$*" >&2
    exit 1
}

while (($# > 0)); do
    case $1 in
    --httpd) httpd=$2; shift ;;
    --init) init=$2; shift ;;
    --image) image=$2; shift ;;
    --duration) duration=$2; shift ;;
    --threads) threads=$2; shift ;;
    --connections) connections=$2; shift ;;
    --start-runs) start_runs=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

for tool in wrk podman curl python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ -x $httpd ]] || die "$httpd is not executable; build flwd first or pass --httpd"
[[ -x $init ]] || die "$init is not executable; build flwd first or pass --init"

work=$(mktemp -d /tmp/flwd-httpd-bench.XXXXXX)
chmod 0755 "$work"
mkdir -m 0755 "$work/jobs" "$work/state"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
httpd_pid=
podman_pid=

cleanup() {
    if [[ -n $httpd_pid ]]; then
        kill -TERM "$httpd_pid" 2>/dev/null || true
        wait "$httpd_pid" 2>/dev/null || true
    fi
    if [[ -n $podman_pid ]]; then
        kill -TERM "$podman_pid" 2>/dev/null || true
        wait "$podman_pid" 2>/dev/null || true
    fi
    local left
    left=$(podman ps --all --quiet --filter "label=io.flwd.state-dir=$work/state" 2>/dev/null || true)
    if [[ -n $left ]]; then
        # shellcheck disable=SC2086
        podman rm --force $left >/dev/null 2>&1 || true
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT

write_job() {
    printf 'id: %s\nexecutor: container\ninterpreter: "container:%s"\ncommand: %s\n' \
        "$1" "$image" "$2" >"$work/jobs/$1.yaml"
}
write_job hello '["sh", "-c", "echo hello"]'
write_job sleeper '["sleep", "300"]'

# Print a port that is free now on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_httpd() {
    FLWD_TOKEN=$token FLWD_INIT=$init "$httpd" --listen 127.0.0.1:0 \
        --jobs "$work/jobs" --state-dir "$work/state" --runtime podman \
        2>"$work/httpd.log" &
    httpd_pid=$!
    local i
    for ((i = 0; i < 1800; i++)); do
        httpd_port=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$work/httpd.log" | cut -d: -f2 || true)
        [[ -n $httpd_port ]] && return
        kill -0 "$httpd_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/httpd.log" >&2
    die "flwd-httpd did not start"
}

start_podman_service() {
    podman_port=$(free_port)
    podman system service --time=0 "tcp:127.0.0.1:$podman_port" 2>"$work/podman.log" &
    podman_pid=$!
    local i
    for ((i = 0; i < 600; i++)); do
        curl -sf "http://127.0.0.1:$podman_port/_ping" >/dev/null && return
        sleep 0.1
    done
    die "podman system service did not respond on port $podman_port within 60 s"
}

# Time POST /runs until the run is "running", cancel it, START_RUNS times.
# Prints the median and then every sample, in milliseconds.
time_starts() {
    python3 - "$httpd_port" "$token" "$start_runs" <<'PYTHON'
import http.client, json, statistics, sys, time

port, token, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = {"Authorization": f"Bearer {token}"}
final = ("succeeded", "failed", "cancelled", "timed_out", "error")

def call(method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request(method, path, body=body, headers=headers)
    reply = conn.getresponse()
    data = json.loads(reply.read())
    conn.close()
    return reply.status, data

samples = []
for _ in range(count):
    start = time.monotonic()
    status, run = call("POST", "/runs", json.dumps({"job": "sleeper"}))
    if status != 201:
        sys.exit(f"POST /runs answered {status}: {run}")
    while run["state"] != "running":
        if run["state"] in final:
            sys.exit(f"run ended {run['state']} before running: {run}")
        time.sleep(0.005)
        _, run = call("GET", f"/runs/{run['id']}")
    samples.append((time.monotonic() - start) * 1000)
    call("POST", f"/runs/{run['id']}:cancel")
    while call("GET", f"/runs/{run['id']}")[1]["state"] not in final:
        time.sleep(0.05)
print(f"{statistics.median(samples):.0f} " + " ".join(f"{s:.0f}" for s in samples))
PYTHON
}

# Run wrk against URL, with any further arguments (headers), and print
# "requests/s p50 p99".
run_wrk() {
    local url=$1
    shift
    wrk --threads "$threads" --connections "$connections" --duration "$duration" \
        --latency "$@" "$url" >"$work/wrk.out"
    if grep -q 'Non-2xx' "$work/wrk.out"; then
        cat "$work/wrk.out" >&2
        die "$url returned non-2xx responses"
    fi
    awk '
        /^Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        END { print rps, p50, p99 }
    ' "$work/wrk.out"
}

ratio() {
    python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.1f}")' "$1" "$2"
}

start_httpd
start_podman_service

# A finished run for GET /runs/ID.
run_id=$(curl -sf -H "Authorization: Bearer $token" -d '{"job":"hello"}' \
    "http://127.0.0.1:$httpd_port/runs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
state=
for ((i = 0; i < 3000; i++)); do
    state=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$httpd_port/runs/$run_id" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
    [[ $state == succeeded ]] && break
    sleep 0.1
done
[[ $state == succeeded ]] || die "the hello run ended $state"

auth=(--header "Authorization: Bearer $token")
read -r h_rps h_p50 h_p99 < <(run_wrk "http://127.0.0.1:$httpd_port/healthz")
read -r r_rps r_p50 r_p99 < <(run_wrk "http://127.0.0.1:$httpd_port/runs/$run_id" "${auth[@]}")
read -r p_rps p_p50 p_p99 < <(run_wrk "http://127.0.0.1:$podman_port/_ping")
read -r l_rps l_p50 l_p99 < <(run_wrk "http://127.0.0.1:$podman_port/v4.0.0/libpod/containers/json")
read -r start_median start_samples < <(time_starts)

cat <<REPORT
| endpoint | requests/s | latency p50 | latency p99 |
| --- | ---: | ---: | ---: |
| flwd-httpd GET /healthz | $h_rps | $h_p50 | $h_p99 |
| flwd-httpd GET /runs/ID | $r_rps | $r_p50 | $r_p99 |
| podman service GET /_ping | $p_rps | $p_p50 | $p_p99 |
| podman service GET /v4.0.0/libpod/containers/json | $l_rps | $l_p50 | $l_p99 |

wrk: $threads threads, $connections connections, $duration per endpoint.
GET /healthz vs GET /_ping: flwd-httpd serves $(ratio "$h_rps" "$p_rps") times the requests per second.
GET /runs/ID vs GET containers/json: flwd-httpd serves $(ratio "$r_rps" "$l_rps") times the requests per second.

POST /runs to state "running", median of $start_runs: $start_median ms (samples: $start_samples).
REPORT
