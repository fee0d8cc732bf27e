#!/usr/bin/env bash
# Configure a Debian 12 host so that root and rootless Podman can run the
# flwd test containers.
#
# Writes the root containers.conf and registries.conf drop-ins, the
# subordinate id ranges, the unprivileged test user flwdtest and its
# rootless Podman configuration. Every step checks the current state first,
# so running the script again changes nothing. Requires root.
set -euo pipefail

readonly test_user=flwdtest
readonly test_user_subid_start=100000
readonly test_user_subid_count=65536

# The range that `podman run --userns=auto` allocates from when run as root.
readonly auto_userns_start=2147483647
readonly auto_userns_count=2147483648

readonly root_containers_conf=/etc/containers/containers.conf.d/50-flwd.conf
readonly registries_conf=/etc/containers/registries.conf.d/50-flwd-test.conf

log() {
    printf 'host-setup: %s\n' "$*"
}

die() {
    printf 'host-setup: error: %s\n' "$*" >&2
    exit 1
}

# runc instead of crun, because crun fails on hosts with cgroups v1 hybrid
# mounts (crun 1.8 in Debian 12). cgroupfs and the file events logger
# because the host may have no systemd as PID 1. Without explicit nofile and
# nproc limits, runc fails with "error setting rlimit type 6" when it copies
# the host's hard limits.
root_containers_conf_text='[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
'

# A rootless user cannot raise limits above its own, so it keeps the
# process's limits (empty default_ulimits) and only selects the engine.
rootless_containers_conf_text='[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
'

# The test registry started by scripts/services.sh serves plain HTTP. This
# drop-in in /etc also applies to rootless Podman.
registries_conf_text='[[registry]]
location = "127.0.0.1:5000"
insecure = true
'

# Write TEXT to PATH with MODE unless PATH already has exactly that content.
write_root_file() {
    local path=$1 mode=$2 text=$3
    local tmp

    if [[ -f $path ]] && [[ $(<"$path") == "${text%$'\n'}" ]]; then
        log "unchanged: $path"
        return 0
    fi
    mkdir -p -- "$(dirname -- "$path")"
    tmp=$(mktemp "$path.XXXXXX")
    printf '%s' "$text" >"$tmp"
    chmod "$mode" -- "$tmp"
    mv -f -- "$tmp" "$path"
    log "wrote: $path"
}

# Append NAME:START:COUNT to FILE (/etc/subuid or /etc/subgid) unless NAME
# already has a range there. An existing range with other numbers is kept,
# because it may be in use by existing containers and their files.
# Returns 0 when the file changed and 1 when it did not.
ensure_subid_range() {
    local file=$1 name=$2 start=$3 count=$4
    local wanted="$name:$start:$count"
    local existing

    if [[ ! -e $file ]]; then
        install -m 0644 /dev/null "$file"
    fi
    existing=$(grep -E "^${name}:" -- "$file" || true)
    if [[ -z $existing ]]; then
        printf '%s\n' "$wanted" >>"$file"
        log "added $wanted to $file"
        return 0
    fi
    if [[ $existing == "$wanted" ]]; then
        log "unchanged: $wanted in $file"
    else
        log "keeping the existing range of $name in $file: ${existing//$'\n'/ }"
    fi
    return 1
}

# Write TEXT to PATH as the user, so that the file gets the user's
# ownership and a symlink planted by the user cannot redirect a root write.
write_user_file() {
    local user=$1 path=$2 text=$3

    if [[ -f $path ]] && [[ $(<"$path") == "${text%$'\n'}" ]]; then
        log "unchanged: $path"
        return 0
    fi
    runuser -u "$user" -- mkdir -p -- "$(dirname -- "$path")"
    printf '%s' "$text" | runuser -u "$user" -- tee -- "$path" >/dev/null
    log "wrote: $path"
}

if ((EUID != 0)); then
    die "host-setup.sh must run as root; run: sudo $0"
fi
for tool in useradd runuser podman; do
    if ! command -v "$tool" >/dev/null; then
        die "$tool not found; run scripts/install-deps.sh first"
    fi
done

write_root_file "$root_containers_conf" 0644 "$root_containers_conf_text"
write_root_file "$registries_conf" 0644 "$registries_conf_text"

if id -u "$test_user" >/dev/null 2>&1; then
    log "user $test_user exists"
else
    useradd -m -s /bin/bash "$test_user"
    log "created user $test_user"
fi
test_uid=$(id -u "$test_user")
test_home=$(getent passwd "$test_user" | cut -d: -f6)
if [[ -z $test_home || ! -d $test_home ]]; then
    die "home directory of $test_user not found (passwd entry: '$test_home')"
fi

subid_changed=false
for file in /etc/subuid /etc/subgid; do
    ensure_subid_range "$file" containers "$auto_userns_start" "$auto_userns_count" || true
    if ensure_subid_range "$file" "$test_user" "$test_user_subid_start" "$test_user_subid_count"; then
        subid_changed=true
    fi
done

write_user_file "$test_user" "$test_home/.config/containers/containers.conf" \
    "$rootless_containers_conf_text"

# Rootless Podman keeps its runtime state in XDG_RUNTIME_DIR. Without
# systemd-logind nothing creates /run/user/UID, and /run is emptied at boot.
runtime_dir=/run/user/$test_uid
if [[ -d $runtime_dir && ! -L $runtime_dir ]] &&
    [[ $(stat -c '%u %a' -- "$runtime_dir") == "$test_uid 700" ]]; then
    log "unchanged: $runtime_dir"
else
    install -d -m 0755 /run/user
    install -d -m 0700 -o "$test_user" -g "$(id -g "$test_user")" "$runtime_dir"
    log "created $runtime_dir (owner $test_user, mode 0700)"
fi

# Rootless Podman connects containers to the network through slirp4netns,
# which opens /dev/net/tun as the user. udev's default rules make the node
# mode 0666, but on hosts without udev the kernel creates it as 0600 and
# every rootless `podman run` without --network=none fails. The kernel's
# tuntap documentation recommends 0666: creating or attaching to a device
# that the user does not own still requires CAP_NET_ADMIN.
tun_device=/dev/net/tun
if [[ ! -c $tun_device ]]; then
    log "warning: $tun_device not found; rootless containers will need --network=none"
elif [[ $(stat -c '%a' -- "$tun_device") == 666 ]]; then
    log "unchanged: $tun_device mode 0666"
else
    chmod 0666 -- "$tun_device"
    log "changed $tun_device to mode 0666"
fi

# Rootless Podman caches the user namespace layout in its storage. After the
# subordinate ranges change, `podman system migrate` makes it pick them up.
if [[ $subid_changed == true ]]; then
    log "subordinate ids of $test_user changed; running podman system migrate as $test_user"
    runuser -u "$test_user" -- env HOME="$test_home" XDG_RUNTIME_DIR="$runtime_dir" \
        podman system migrate
fi

log "done"
