#!/usr/bin/env bash
# A Docker engine for the image and compose tests, on machines that have none running.
#
#   tools/docker-env.sh up       ensure an engine answers; prints shell lines to eval:
#                                  export DOCKER_HOST=...       (only when one must be set)
#                                  export CAPA_DOCKER_STARTED=1 (only when this call started it)
#   tools/docker-env.sh down     stop the engine `up` started and remove its folder
#   tools/docker-env.sh status   say which engine answers, if any
#
# `up` does nothing but say so when `docker info` already works (a developer's own Docker, or
# an engine an earlier `up` left running). Otherwise it installs what is missing from Debian's
# packages (docker.io, docker-compose, debootstrap) and starts dockerd as root the way the CI
# machines allow: no iptables, no bridge (containers use the host network), and data, exec
# root, pid file, socket and log in one folder it owns, CAPA_DOCKER_DIR (default
# /tmp/capacloud-docker). Storage: CAPA_DOCKER_STORAGE=auto (default) tries overlay2, which
# starts a container in seconds, and falls back to vfs, which copies the whole image for every
# container and build step; overlay2|vfs force one. Containers go under a cgroup parent named
# after the folder, so `down` removes exactly what the engine made. Nothing under /etc is
# written by this script or its engine (the identity key stays in the folder); apt leaves what
# its packages install (/etc/docker, the docker group), and Debian's invoke-rc.d starts no
# service on a machine without an init system, so no system-wide dockerd appears.
set -euo pipefail

state_dir=${CAPA_DOCKER_DIR:-/tmp/capacloud-docker}
socket="$state_dir/docker.sock"
pidfile="$state_dir/dockerd.pid"
log="$state_dir/dockerd.log"
storage=${CAPA_DOCKER_STORAGE:-auto}
cgroup_parent=capacloud-docker-$(echo "$state_dir" | sha256sum | cut -c1-8)
start_timeout=${CAPA_DOCKER_START_TIMEOUT:-60}
packages=(docker.io docker-compose debootstrap)

say() { echo "docker-env: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# `docker info` against what the caller's environment names (DOCKER_HOST, a context, or the
# default socket), quietly; true when a daemon answers.
engine_answers() {
    command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

own_engine_running() {
    [ -S "$socket" ] && [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null &&
        DOCKER_HOST="unix://$socket" engine_answers
}

install_missing() {
    local missing=() package
    for package in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; run as root (or sudo) to install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

dockerd_binary() {
    # Debian's dockerd, even when another docker client comes first on PATH.
    if [ -x /usr/sbin/dockerd ]; then
        echo /usr/sbin/dockerd
    else
        command -v dockerd || die "dockerd not found after installing docker.io"
    fi
}

# Starts dockerd with one storage driver; false when it exits before answering (a driver the
# kernel or the backing filesystem lacks makes it exit at once).
start_dockerd() {
    local driver=$1 dockerd pid started=$SECONDS
    dockerd=$(dockerd_binary)
    rm -f "$socket" "$pidfile"
    # setsid: the engine outlives the shell that started it, until `down`.
    setsid "$dockerd" \
        --config-file "$state_dir/daemon.json" \
        --host "unix://$socket" \
        --data-root "$state_dir/data" \
        --exec-root "$state_dir/exec" \
        --pidfile "$pidfile" \
        --storage-driver "$driver" \
        --iptables=false --ip6tables=false --ip-masq=false \
        --bridge none \
        --userland-proxy=false \
        --cgroup-parent "$cgroup_parent" \
        </dev/null >>"$log" 2>&1 9>&- &
    pid=$!
    until DOCKER_HOST="unix://$socket" engine_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "dockerd with $driver storage exited while starting"
            return 1
        fi
        if ((SECONDS - started > start_timeout)); then
            tail -n 20 "$log" >&2 || true
            kill -TERM "$pid" 2>/dev/null || true
            die "dockerd did not answer within ${start_timeout}s; its log: $log"
        fi
        sleep 0.2
    done
    say "started dockerd (pid $pid, $driver storage, host network only) in $((SECONDS - started))s; data in $state_dir"
}

start_engine() {
    [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root (storage mounts, cgroups, namespaces)"
    install_missing
    mkdir -p "$state_dir"
    chmod 0711 "$state_dir"
    # A config file of its own, so no daemon.json under /etc changes what this engine does;
    # it also keeps the engine's identity key in the folder instead of /etc/docker/key.json.
    printf '{"deprecated-key-path": "%s/key.json"}\n' "$state_dir" >"$state_dir/daemon.json"
    local drivers driver
    case "$storage" in
    auto) drivers=(overlay2 vfs) ;;
    overlay2 | vfs) drivers=("$storage") ;;
    *) die "CAPA_DOCKER_STORAGE must be auto, overlay2 or vfs, not '$storage'" ;;
    esac
    for driver in "${drivers[@]}"; do
        if start_dockerd "$driver"; then
            return 0
        fi
        # What a failed start left: its netns mount, a half-made data folder.
        release_mounts
        rm -rf "$state_dir/data" "$state_dir/exec"
    done
    tail -n 20 "$log" >&2 || true
    die "dockerd did not start with ${drivers[*]} storage; its log: $log"
}

release_mounts() {
    # Mounts an engine leaves behind it (the default netns, container shm), deepest first.
    awk -v dir="$state_dir/" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r |
        while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
}

# One `up` or `down` at a time (parallel test runs share the engine). dockerd does not inherit
# the lock (9>&- where it starts), or `down` would wait for the engine it is meant to stop.
take_lock() {
    exec 9>>"${state_dir}.lock"
    flock -w 300 9 || die "another docker-env.sh holds ${state_dir}.lock"
}

cmd_up() {
    if engine_answers; then
        say "Docker already answers (${DOCKER_HOST:-default context}, server $(docker info --format '{{.ServerVersion}}' 2>/dev/null)); nothing to do"
        return 0
    fi
    take_lock
    if own_engine_running; then
        say "the engine started earlier in $state_dir answers; nothing to do"
        echo "export DOCKER_HOST=unix://$socket"
        return 0
    fi
    start_engine
    say "to use it: export DOCKER_HOST=unix://$socket; to stop it: $0 down"
    echo "export DOCKER_HOST=unix://$socket"
    echo "export CAPA_DOCKER_STARTED=1"
}

# Processes this engine started that outlive dockerd: its containerd and the shims, found by
# the socket paths under our own state folder (no other engine's processes match them).
leftover_pids() {
    local pid cmdline
    for pid in /proc/[0-9]*; do
        cmdline=$(tr '\0' ' ' 2>/dev/null <"$pid/cmdline") || continue
        case "$cmdline" in
        *"$state_dir/"*) echo "${pid#/proc/}" ;;
        esac
    done
}

cmd_down() {
    take_lock
    if [ ! -d "$state_dir" ]; then
        rm -f "${state_dir}.lock"
        say "no engine of ours in $state_dir; nothing to stop"
        return 0
    fi
    local cgroups=""
    if [ -f "$pidfile" ] && pid=$(cat "$pidfile") && kill -0 "$pid" 2>/dev/null; then
        # The containers' cgroup parent sits below dockerd's own cgroup in each hierarchy.
        cgroups=$(awk -F: -v parent="$cgroup_parent" '{
            n = split($2, names, ","); if ($2 == "") { names[1] = "unified"; n = 1 }
            for (i = 1; i <= n; i++) { sub(/^name=/, "", names[i]); print names[i] ":" $3 "/" parent } }' \
            "/proc/$pid/cgroup")
        kill -TERM "$pid"
        # dockerd stops its containers (10 s each at most) and its containerd before it exits.
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "dockerd $pid still running after 30s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    local leftovers
    leftovers=$(leftover_pids)
    if [ -n "$leftovers" ]; then
        say "stopping leftover processes of this engine: $(echo "$leftovers" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        kill -KILL $leftovers 2>/dev/null || true
    fi
    release_mounts
    rm -rf --one-file-system "$state_dir"
    rm -f "${state_dir}.lock"
    # Empty cgroup directories are all the engine leaves in the hierarchies; rmdir removes
    # only those (a cgroup with processes in it refuses).
    local entry hierarchy path directory
    for entry in $cgroups; do
        hierarchy=${entry%%:*}
        path=${entry#*:}
        directory="/sys/fs/cgroup/$hierarchy/${path#/}"
        [ -d "$directory" ] || continue
        find "$directory" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    say "stopped the engine and removed $state_dir"
}

cmd_status() {
    if engine_answers; then
        say "Docker answers (${DOCKER_HOST:-default context})"
    elif own_engine_running; then
        say "our engine answers at unix://$socket (export DOCKER_HOST to use it)"
    else
        say "no Docker engine answers"
        return 1
    fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
