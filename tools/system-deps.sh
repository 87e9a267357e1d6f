#!/usr/bin/env bash
# Sets up what the enclave sandboxes need from the system, only when something is missing:
#   bubblewrap                      exec / onnx / wasm sandbox (namespaces, read-only root)
#   clang lld wasi-libc             build workloads/*.c to wasm32-wasi
#   libclang-rt-dev-wasm32          compiler-rt builtins for wasm32 (the linker asks for them)
#   gcc                             the native C baseline of bench/enclave
#   user capacloud-sandbox          the unprivileged host user a root daemon runs every job as
#                                   (node/enclave/native_sandbox.py); without it, a root daemon
#                                   refuses to run jobs. A daemon that is not root needs none.
# Idempotent: a machine that has them all runs no apt or useradd command at all.
set -euo pipefail

sandbox_user=capacloud-sandbox
packages=(bubblewrap clang lld wasi-libc libclang-rt-dev-wasm32 gcc)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -ne 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "system-deps: missing ${missing[*]}; run this script as root (or sudo) to install them" >&2
        exit 1
    fi
    echo "system-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(id -u)" -eq 0 ] && ! getent passwd "$sandbox_user" >/dev/null; then
    # A system user with its own group, no home, no shell, no subordinate ids: it owns nothing
    # on this host, so a job that gets past its namespaces still holds no file, sysctl or device.
    echo "system-deps: creating the sandbox user $sandbox_user"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "CapaCloud sandboxed jobs" "$sandbox_user"
fi
