#!/usr/bin/env bash
# Builds the node image without a registry or a package index reachable from inside the build:
#
#   tools/docker-image.sh base         a local Debian base image (prints its tag)
#   tools/docker-image.sh wheelhouse   every wheel the project needs, built on the host
#   tools/docker-image.sh build [TAG]  both, then the repository's Dockerfile (prints the tag)
#
# Needs an engine that answers (tools/docker-env.sh up) and `make deps` (the image carries the
# anvil binary from node_modules).
#
# base: `debootstrap --variant=minbase` of this host's Debian release with python3 (3.11 on
# bookworm), its venv module and bubblewrap, trimmed of docs, man pages, locales and apt
# caches, tarred into the cache and `docker import`ed as capacloud/base:<release>. The tarball
# is reused while the package list is unchanged; the import is skipped when the tag exists and
# carries the same key (label org.capacloud.base-key).
# BASE_IMAGE set (an image with python3 >= 3.11, e.g. the official slim one) skips all this.
#
# wheelhouse: `pip wheel` of the project's runtime dependencies (no dev extras) and its build
# backend, into .cache/wheelhouse inside the build context, where the Dockerfile finds it
# (WHEELHOUSE build argument) and installs with --no-index. Rebuilt when pyproject.toml or the
# host's Python version changes; the host's Python must be the image's minor version (the
# wheels are cp3XX), which the build checks.
#
# Caches, outside git: the base tarball in CAPA_CACHE_DIR (default ~/.cache/capacloud, shared by
# every checkout on the machine), the wheelhouse in <repo>/.cache (it must be in the build
# context; pip's own cache makes a rebuild quick). Debian's mirror is the one this host's apt
# uses (CAPA_DEBIAN_MIRROR overrides it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CAPA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/capacloud}
wheelhouse_rel=.cache/wheelhouse
wheelhouse="$repo/$wheelhouse_rel"
base_packages=python3,python3-venv,bubblewrap,passwd
label=org.capacloud

say() { echo "docker-image: $*" >&2; }
die() {
    say "$*"
    exit 1
}

os_release() {
    # shellcheck disable=SC1091
    (. /etc/os-release && echo "${!1:-}")
}

# The URI this host's apt fetches the release's main component from, from deb822 *.sources
# files or one-line *.list files.
debian_mirror() {
    if [ -n "${CAPA_DEBIAN_MIRROR:-}" ]; then
        echo "$CAPA_DEBIAN_MIRROR"
        return
    fi
    local codename=$1 found=""
    shopt -s nullglob
    local file
    for file in /etc/apt/sources.list.d/*.sources; do
        found=$(awk -v suite="$codename" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
                    (" " comps " ") ~ / main / && enabled != "no" && uri == "") {
                    split(uris, parts, " "); uri = parts[1]
                }
                types = suites = comps = uris = enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "") }
            key == "types" { types = $0 } key == "suites" { suites = $0 }
            key == "components" { comps = $0 } key == "uris" { uris = $0 }
            key == "enabled" { enabled = tolower($0) }
            END { flush(); print uri }' "$file")
        [ -n "$found" ] && break
    done
    if [ -z "$found" ]; then
        found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v suite="$codename" '$1 == "deb" {
                    i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit } }')
    fi
    [ -n "$found" ] || die "no apt source for $codename main on this host; set CAPA_DEBIAN_MIRROR"
    echo "$found"
}

cmd_base() {
    [ "$(os_release ID)" = debian ] || die "the local base is built from Debian; this host is $(os_release ID)"
    local codename tag key tarball
    codename=$(os_release VERSION_CODENAME)
    tag=capacloud/base:$codename
    # root-755: tarballs and images made before the rootfs's own mode was fixed (0700, see
    # below) are never reused.
    key=$(printf '%s\n' "$codename" "$base_packages" "trim-1" "root-755" | sha256sum | cut -c1-12)
    if [ "$(docker image inspect --format "{{ index .Config.Labels \"$label.base-key\" }}" "$tag" 2>/dev/null)" = "$key" ]; then
        say "base image $tag present"
        echo "$tag"
        return
    fi
    tarball="$cache/base-$codename-$key.tar"
    if [ ! -f "$tarball" ]; then
        [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
        command -v debootstrap >/dev/null || die "debootstrap missing: tools/docker-env.sh up installs it"
        local mirror rootfs started=$SECONDS
        mirror=$(debian_mirror "$codename")
        mkdir -p "$cache"
        rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
        # mktemp makes it 0700, and the tarball's `./` entry carries that mode into the image's
        # `/`: overlay2 hides it (a container's root takes its upper layer's 0755), vfs copies
        # it, and then the sandbox user, who runs bubblewrap, can open nothing at all.
        chmod 0755 "$rootfs"
        say "debootstrap --variant=minbase $codename (+$base_packages) into $rootfs"
        # A private mount namespace: the /proc and /sys debootstrap mounts in the target end
        # with it, instead of staying mounted (and busy) on the host.
        if ! unshare --mount --propagation private \
            debootstrap --variant=minbase --include="$base_packages" "$codename" "$rootfs" "$mirror" \
            >"$rootfs.log" 2>&1; then
            tail -n 20 "$rootfs.log" >&2
            rm -rf --one-file-system "$rootfs"
            die "debootstrap failed; its log: $rootfs.log"
        fi
        # What a runtime image never reads: docs, man pages, locales, apt's package lists and
        # downloaded packages (the image installs nothing more through apt).
        rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf --one-file-system "$rootfs" "$rootfs.log"
        say "base tarball $tarball ($(du -h "$tarball" | cut -f1)) in $((SECONDS - started))s"
    fi
    local python
    python=$(tar -tf "$tarball" ./usr/bin/ | sed -n 's#^\./usr/bin/python\(3\.[0-9]*\)$#\1#p' | head -1)
    docker import \
        --change "LABEL $label.python=$python $label.debian=$codename $label.base-key=$key" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$tarball" "$tag" >/dev/null
    say "imported $tag (python $python)"
    echo "$tag"
}

host_python() {
    if [ -x "$repo/.venv/bin/python" ]; then
        echo "$repo/.venv/bin/python"
    else
        command -v python3
    fi
}

cmd_wheelhouse() {
    local python version key
    python=$(host_python)
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    key=$(cat "$repo/pyproject.toml" <(echo "$version") | sha256sum | cut -c1-16)
    if [ -f "$wheelhouse/.key" ] && [ "$(cat "$wheelhouse/.key")" = "$key" ]; then
        say "wheelhouse $wheelhouse_rel up to date (python $version)"
        echo "$wheelhouse_rel"
        return
    fi
    local staging="$wheelhouse.tmp" started=$SECONDS
    rm -rf "$staging"
    mkdir -p "$staging"
    say "building the wheelhouse with python $version"
    # The project's dependencies (pip wheel of the project builds them all, no extras), then
    # the build backend that `pip install` of the project asks for; the project's own wheel
    # is dropped: the image installs the source (see the Dockerfile).
    "$python" -m pip wheel --quiet --disable-pip-version-check -w "$staging" "$repo" 2>"$staging.log" ||
        {
            tail -n 20 "$staging.log" >&2
            die "pip wheel failed; its log: $staging.log"
        }
    "$python" -m pip wheel --quiet --disable-pip-version-check -w "$staging" \
        "setuptools>=69" wheel 2>>"$staging.log"
    rm -f "$staging"/capacloud_node-*.whl "$staging.log"
    echo "$version" >"$staging/.python"
    echo "$key" >"$staging/.key"
    rm -rf "$wheelhouse"
    mv "$staging" "$wheelhouse"
    say "wheelhouse: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1), in $((SECONDS - started))s"
    echo "$wheelhouse_rel"
}

cmd_build() {
    local tag=${1:-capacloud/node:dev} base image_python started
    base=${BASE_IMAGE:-$(cmd_base)}
    cmd_wheelhouse >/dev/null
    image_python=$(docker image inspect --format "{{ index .Config.Labels \"$label.python\" }}" "$base" 2>/dev/null || true)
    if [ -n "$image_python" ] && [ "$image_python" != "$(cat "$wheelhouse/.python")" ]; then
        die "$base has python $image_python but the wheelhouse was built with $(cat "$wheelhouse/.python"): run with a host python $image_python"
    fi
    [ -x "$repo/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ] ||
        die "node_modules has no anvil: run \`make deps\` first"
    started=$SECONDS
    say "building $tag from $base"
    # --network host: engines without a bridge (CI) give build steps no other network.
    docker build --network host --build-arg "BASE_IMAGE=$base" \
        --build-arg "WHEELHOUSE=$wheelhouse_rel" -t "$tag" "$repo" >&2
    # The build stage (wheelhouse, compilers) is never run: drop it rather than keep a second
    # image of the same size around as a cache.
    docker image prune --force --filter "label=$label.stage=build" >/dev/null
    say "built $tag in $((SECONDS - started))s, $(docker image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec) uncompressed"
    echo "$tag"
}

case "${1:-}" in
base) cmd_base ;;
wheelhouse) cmd_wheelhouse ;;
build)
    shift
    cmd_build "$@"
    ;;
*)
    echo "usage: $0 base|wheelhouse|build [TAG]" >&2
    exit 2
    ;;
esac
