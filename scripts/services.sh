#!/usr/bin/env bash
# Start, stop or report the services that the flwd integration tests need:
# a Docker daemon and a plain-HTTP registry on 127.0.0.1:5000 that serves
# the test image as 127.0.0.1:5000/flwd/busybox:latest.
#
# The host may have no systemd, so the daemons run as background processes
# with pid files in /run/flwd-test. `stop` ends only the processes that
# `start` started. A dockerd or registry that already responds is used and
# left alone.
set -euo pipefail

readonly run_dir=/run/flwd-test
readonly dockerd_pidfile=$run_dir/dockerd.pid
readonly dockerd_log=$run_dir/dockerd.log
readonly registry_pidfile=$run_dir/registry.pid
readonly registry_log=$run_dir/registry.log
readonly registry_config=$run_dir/registry.yml
readonly registry_data=$run_dir/registry
readonly registry_addr=127.0.0.1:5000
readonly image_ref=localhost/flwd-busybox:latest
readonly registry_repo=flwd/busybox
readonly registry_ref=$registry_addr/$registry_repo:latest

# Maximum seconds to wait for a daemon to respond after its start, and for
# it to exit after SIGTERM before it gets SIGKILL.
readonly start_timeout=60
readonly stop_timeout=30

usage() {
    cat <<EOF
Usage: $0 start|stop|status

  start   start dockerd and the registry on $registry_addr unless they
          already respond, then push $image_ref to $registry_ref
  stop    stop the daemons that 'start' started, and wait until they exit
  status  show which daemons respond; exits 0 when both do and the
          registry has the image, 3 otherwise

Pid files and logs are in $run_dir. Must run as root.
EOF
}

log() {
    printf 'services: %s\n' "$*"
}

die() {
    printf 'services: error: %s\n' "$*" >&2
    exit 1
}

# Print the last lines of LOG to stderr so a failure shows its cause.
show_log_tail() {
    local log_file=$1
    if [[ -s $log_file ]]; then
        printf 'services: last lines of %s:\n' "$log_file" >&2
        tail -n 20 -- "$log_file" | sed 's/^/    /' >&2
    fi
}

docker_responds() {
    timeout 20 docker info >/dev/null 2>&1
}

registry_responds() {
    curl -sf --max-time 5 -o /dev/null "http://$registry_addr/v2/"
}

# Print the pid in PIDFILE when that process is alive and runs EXECUTABLE.
# The executable check keeps a stale pid file whose pid was reused by
# another process from naming that process. Returns 1 otherwise.
read_live_pid() {
    local pidfile=$1 executable=$2
    local pid exe

    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink -- "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ $exe == "$executable" ]] || return 1
    printf '%s\n' "$pid"
}

# Wait until CHECK succeeds while process PID is alive. On timeout or exit
# of the process, print the log and return 1.
wait_until_ready() {
    local name=$1 pid=$2 log_file=$3 check=$4
    local deadline=$((SECONDS + start_timeout))

    while ((SECONDS < deadline)); do
        if "$check"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            printf 'services: error: %s (pid %s) exited during start-up; log: %s\n' \
                "$name" "$pid" "$log_file" >&2
            show_log_tail "$log_file"
            return 1
        fi
        sleep 0.5
    done
    printf 'services: error: %s (pid %s) did not respond within %ss; log: %s\n' \
        "$name" "$pid" "$start_timeout" "$log_file" >&2
    show_log_tail "$log_file"
    return 1
}

# Succeed when PID exits within SECONDS seconds.
wait_for_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# Send SIGTERM to PID and wait for it to exit. After stop_timeout seconds
# send SIGKILL, and fail if the process outlives that too.
terminate() {
    local name=$1 pid=$2

    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_for_exit "$pid" "$stop_timeout"; then
        log "$name (pid $pid) still running ${stop_timeout}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        if ! wait_for_exit "$pid" "$stop_timeout"; then
            printf 'services: error: %s (pid %s) did not exit after SIGKILL\n' "$name" "$pid" >&2
            return 1
        fi
    fi
    log "$name (pid $pid) stopped"
}

dockerd_path() {
    readlink -f -- "$(command -v dockerd)"
}

registry_path() {
    readlink -f -- "$(command -v docker-registry)"
}

start_dockerd() {
    local pid

    if pid=$(read_live_pid "$dockerd_pidfile" "$(dockerd_path)"); then
        log "dockerd already started by services.sh (pid $pid)"
        wait_until_ready dockerd "$pid" "$dockerd_log" docker_responds
        return
    fi
    rm -f -- "$dockerd_pidfile"
    if docker_responds; then
        log "dockerd already responds and was not started by services.sh; leaving it alone"
        return 0
    fi

    log "starting dockerd (log: $dockerd_log)"
    # With iptables off, dockerd leaves the host's firewall rules alone; its
    # default bridge docker0 still gives containers on the "bridge" network
    # an interface, which the limited-network tests need.
    # dockerd writes its own pid file, and rejects a start when one exists
    # that names a live process, so the file is not written here.
    setsid dockerd --iptables=false -p "$dockerd_pidfile" \
        </dev/null >"$dockerd_log" 2>&1 &
    pid=$!
    if ! wait_until_ready dockerd "$pid" "$dockerd_log" docker_responds; then
        terminate dockerd "$pid"
        return 1
    fi
    log "dockerd is ready (pid $pid)"
}

write_registry_config() {
    cat >"$registry_config" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $registry_data
  delete:
    enabled: true
http:
  addr: $registry_addr
EOF
}

start_registry() {
    local pid

    if pid=$(read_live_pid "$registry_pidfile" "$(registry_path)"); then
        log "registry already started by services.sh (pid $pid)"
        wait_until_ready registry "$pid" "$registry_log" registry_responds
        return
    fi
    rm -f -- "$registry_pidfile"
    if registry_responds; then
        log "a registry already responds on $registry_addr and was not started by services.sh; leaving it alone"
        return 0
    fi

    install -d -m 0700 "$registry_data"
    write_registry_config
    log "starting docker-registry on $registry_addr (log: $registry_log)"
    setsid docker-registry serve "$registry_config" </dev/null >"$registry_log" 2>&1 &
    pid=$!
    # setsid runs the program in the same process unless the caller leads
    # its process group, so $! is the registry's pid. The check makes sure
    # that the pid file never names the short-lived setsid process.
    sleep 0.2
    if ! kill -0 "$pid" 2>/dev/null; then
        printf 'services: error: registry (pid %s) exited during start-up; log: %s\n' \
            "$pid" "$registry_log" >&2
        show_log_tail "$registry_log"
        return 1
    fi
    if [[ $(readlink -- "/proc/$pid/exe" 2>/dev/null || true) != "$(registry_path)" ]]; then
        die "pid $pid is not docker-registry; the registry may be running without a pid file (log: $registry_log)"
    fi
    printf '%s\n' "$pid" >"$registry_pidfile"
    if ! wait_until_ready registry "$pid" "$registry_log" registry_responds; then
        terminate registry "$pid"
        rm -f -- "$registry_pidfile"
        return 1
    fi
    log "registry is ready (pid $pid)"
}

registry_has_image() {
    curl -sf --max-time 5 "http://$registry_addr/v2/_catalog" |
        jq -e --arg repo "$registry_repo" '.repositories | index($repo) != null' >/dev/null
}

push_image() {
    if ! podman image exists "$image_ref"; then
        die "$image_ref not found in root Podman; run scripts/build-image.sh --root first"
    fi
    log "pushing $image_ref to $registry_ref"
    podman push --quiet --tls-verify=false "$image_ref" "$registry_ref"
    if ! registry_has_image; then
        die "push finished but the catalog of $registry_addr does not list $registry_repo; log: $registry_log"
    fi
}

stop_by_pidfile() {
    local name=$1 pidfile=$2 executable=$3
    local pid

    if pid=$(read_live_pid "$pidfile" "$executable"); then
        terminate "$name" "$pid"
    elif [[ -f $pidfile ]]; then
        log "$name: removing stale pid file $pidfile"
    else
        log "$name was not started by services.sh; nothing to stop"
    fi
    rm -f -- "$pidfile"
}

stop_dockerd() {
    local pid children=()

    # dockerd stops the containerd it started when it gets SIGTERM. If it
    # needs SIGKILL instead, containerd survives it, so its pids are taken
    # first and any survivors are ended too.
    if pid=$(read_live_pid "$dockerd_pidfile" "$(dockerd_path)"); then
        mapfile -t children < <(pgrep -P "$pid" || true)
    fi
    stop_by_pidfile dockerd "$dockerd_pidfile" "$(dockerd_path)"
    for pid in "${children[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            terminate "dockerd child" "$pid"
        fi
    done
}

cmd_start() {
    install -d -m 0755 "$run_dir"
    start_dockerd
    start_registry
    push_image
    log "services are ready"
}

cmd_stop() {
    if [[ ! -d $run_dir ]]; then
        log "$run_dir not found; nothing to stop"
        return 0
    fi
    stop_by_pidfile registry "$registry_pidfile" "$(registry_path)"
    stop_dockerd
}

cmd_status() {
    local pid ready=true

    if pid=$(read_live_pid "$dockerd_pidfile" "$(dockerd_path)"); then
        log "dockerd: started by services.sh (pid $pid, log $dockerd_log)"
    fi
    if docker_responds; then
        log "dockerd: responds"
    else
        log "dockerd: not responding"
        ready=false
    fi

    if pid=$(read_live_pid "$registry_pidfile" "$(registry_path)"); then
        log "registry: started by services.sh (pid $pid, log $registry_log, data $registry_data)"
    fi
    if registry_responds; then
        log "registry: responds on $registry_addr"
        if registry_has_image; then
            log "registry: has $registry_ref"
        else
            log "registry: $registry_repo not found in the catalog"
            ready=false
        fi
    else
        log "registry: not responding on $registry_addr"
        ready=false
    fi

    [[ $ready == true ]] || return 3
}

if (($# != 1)); then
    usage >&2
    exit 2
fi
case $1 in
-h | --help)
    usage
    exit 0
    ;;
start | stop | status) ;;
*)
    usage >&2
    die "unknown command: $1"
    ;;
esac

if ((EUID != 0)); then
    die "services.sh must run as root; run: sudo $0 $1"
fi
for tool in dockerd docker docker-registry podman curl jq; do
    command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh first"
done

case $1 in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
esac
