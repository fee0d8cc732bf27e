#!/usr/bin/env bash
# Build the offline test image localhost/flwd-busybox:latest and import it
# into root Podman, rootless Podman and Docker image stores.
#
# The image is a root filesystem with a static busybox, built from the
# busybox-static package, so no registry access is needed. The tar is
# reproducible, and each store gets a stamp file that records the tar's
# SHA-256 and the image id. An import is skipped while the store still has
# that image id and the tar is unchanged.
set -euo pipefail

readonly image_ref=localhost/flwd-busybox:latest
readonly default_rootless_user=flwdtest
image_dir=${FLWD_IMAGE_DIR:-/var/tmp/flwd-images}
readonly image_dir
readonly image_tar=$image_dir/flwd-busybox.tar
readonly image_cmd='CMD ["/bin/sh"]'

usage() {
    cat <<EOF
Usage: $0 [--root] [--rootless USER]... [--docker]

Builds the busybox root filesystem tar in \$FLWD_IMAGE_DIR (default
/var/tmp/flwd-images) and imports it as $image_ref.

  --root            import into root Podman
  --rootless USER   import into the rootless Podman store of USER (repeatable)
  --docker          import into Docker (the daemon must be running)
  -h, --help        show this help

Without options the image goes to root Podman, to rootless Podman of
$default_rootless_user if that user exists, and to Docker if \`docker info\`
succeeds. Must run as root.
EOF
}

log() {
    printf 'build-image: %s\n' "$*"
}

die() {
    printf 'build-image: error: %s\n' "$*" >&2
    exit 1
}

docker_responds() {
    command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1
}

# Run a command as USER in the user's home directory with a clean login-like
# environment, which rootless Podman needs to find its configuration and
# storage. The caller's directory may not be accessible to USER.
run_as_user() {
    local user=$1
    shift
    local uid home runtime_dir
    uid=$(id -u "$user")
    home=$(getent passwd "$user" | cut -d: -f6)
    runtime_dir=/run/user/$uid
    if [[ ! -d $runtime_dir ]]; then
        install -d -m 0755 /run/user
        install -d -m 0700 -o "$user" -g "$(id -g "$user")" "$runtime_dir"
    fi
    runuser -u "$user" -- env -i --chdir="$home" \
        PATH=/usr/local/bin:/usr/bin:/bin \
        HOME="$home" USER="$user" LOGNAME="$user" \
        XDG_RUNTIME_DIR="$runtime_dir" LANG=C.UTF-8 \
        "$@"
}

# Write the root filesystem into DIR.
make_rootfs() {
    local rootfs=$1
    local busybox applet

    busybox=$(command -v busybox) ||
        die "busybox not found; install busybox-static (scripts/install-deps.sh)"
    # The image has no C library, so a dynamically linked busybox (from the
    # busybox package instead of busybox-static) would not start in it.
    if ldd "$busybox" >/dev/null 2>&1; then
        die "$busybox is dynamically linked; install busybox-static instead of busybox"
    fi

    install -d -m 0755 "$rootfs/bin" "$rootfs/etc"
    install -d -m 1777 "$rootfs/tmp"
    install -m 0755 "$busybox" "$rootfs/bin/busybox"
    while IFS= read -r applet; do
        if [[ -z $applet || $applet == busybox || $applet == */* || $applet == . || $applet == .. ]]; then
            continue
        fi
        ln -s busybox "$rootfs/bin/$applet"
    done < <("$busybox" --list)

    # root, an unprivileged user app (1000) for tests that set a user, and
    # nobody (65534) for tests that map to the overflow id. The image has no
    # home directories, so app's home is the writable /tmp.
    printf '%s\n' \
        'root:x:0:0:root:/root:/bin/sh' \
        'app:x:1000:1000:app:/tmp:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
        >"$rootfs/etc/passwd"
    printf '%s\n' \
        'root:x:0:' \
        'app:x:1000:' \
        'nobody:x:65534:' \
        >"$rootfs/etc/group"
    chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
}

# Build the tar and replace $image_tar only when its content changed, so the
# checksum stays the same across runs on the same busybox version.
build_tar() {
    local new_tar
    build_work=$(mktemp -d "$image_dir/build.XXXXXX")

    make_rootfs "$build_work/rootfs"
    new_tar=$build_work/flwd-busybox.tar
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        --format=gnu -C "$build_work/rootfs" -cf "$new_tar" .

    if [[ -f $image_tar ]] && cmp -s -- "$new_tar" "$image_tar"; then
        log "unchanged: $image_tar"
    else
        chmod 0644 -- "$new_tar"
        mv -f -- "$new_tar" "$image_tar"
        log "wrote: $image_tar"
    fi
    rm -rf -- "$build_work"
    build_work=""
}

# Import the tar into one store. STORE names the stamp file, and the rest
# of the arguments are the command prefix that runs the engine's CLI
# (podman or docker, possibly through run_as_user).
import_into() {
    local store=$1
    shift
    local -a cli=("$@")
    local stamp=$image_dir/imported-$store
    local tar_sum current_id="" old_id new_id

    tar_sum=$(sha256sum -- "$image_tar" | cut -d' ' -f1)
    current_id=$("${cli[@]}" image inspect --format '{{.Id}}' "$image_ref" 2>/dev/null) || current_id=""
    if [[ -n $current_id && -f $stamp ]] && [[ $(<"$stamp") == "$tar_sum $current_id" ]]; then
        log "$store: $image_ref is up to date (${current_id:0:19})"
        return 0
    fi

    old_id=$current_id
    log "$store: importing $image_ref"
    "${cli[@]}" import --change "$image_cmd" - "$image_ref" <"$image_tar" >/dev/null
    new_id=$("${cli[@]}" image inspect --format '{{.Id}}' "$image_ref")
    printf '%s %s\n' "$tar_sum" "$new_id" >"$stamp"
    log "$store: imported $image_ref (${new_id:0:19})"

    # The previous import is now untagged. Remove it unless a container or
    # another tag still uses it, which makes `image rm` without --force fail.
    if [[ -n $old_id && $old_id != "$new_id" ]]; then
        if "${cli[@]}" image rm "$old_id" >/dev/null 2>&1; then
            log "$store: removed the previous image ${old_id:0:19}"
        else
            log "$store: kept the previous image ${old_id:0:19} because it is still in use"
        fi
    fi
}

# Temporary directory of build_tar, removed on any exit.
build_work=""
remove_build_work() {
    if [[ -n $build_work ]]; then
        rm -rf -- "$build_work"
    fi
}
trap remove_build_work EXIT

want_root=false
want_docker=false
rootless_users=()
explicit=false
while (($# > 0)); do
    case $1 in
    --root)
        want_root=true
        explicit=true
        ;;
    --rootless)
        (($# >= 2)) || die "--rootless requires a user name"
        rootless_users+=("$2")
        explicit=true
        shift
        ;;
    --docker)
        want_docker=true
        explicit=true
        ;;
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
    die "build-image.sh must run as root; run: sudo $0"
fi
command -v podman >/dev/null || die "podman not found; run scripts/install-deps.sh first"

if [[ $explicit == false ]]; then
    want_root=true
    if id -u "$default_rootless_user" >/dev/null 2>&1; then
        rootless_users+=("$default_rootless_user")
    else
        log "user $default_rootless_user not found; skipping rootless Podman (run scripts/host-setup.sh)"
    fi
    if docker_responds; then
        want_docker=true
    else
        log "docker info failed; skipping Docker (start it with scripts/services.sh start)"
    fi
fi

for user in "${rootless_users[@]}"; do
    id -u "$user" >/dev/null 2>&1 || die "user $user not found; run scripts/host-setup.sh first"
done
if [[ $want_docker == true ]] && ! docker_responds; then
    die "docker info failed; start dockerd first (scripts/services.sh start)"
fi

install -d -m 0755 "$image_dir"
build_tar

if [[ $want_root == true ]]; then
    import_into podman-root podman
fi
for user in "${rootless_users[@]}"; do
    import_into "podman-$user" run_as_user "$user" podman
done
if [[ $want_docker == true ]]; then
    import_into docker docker
fi
log "done"
