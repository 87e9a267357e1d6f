#!/usr/bin/env bash
# Installs the Debian packages the enclave sandboxes need, only when something is missing:
#   bubblewrap                      exec / onnx sandbox (namespaces, read-only root)
#   clang lld wasi-libc             build workloads/*.c to wasm32-wasi
#   libclang-rt-dev-wasm32          compiler-rt builtins for wasm32 (the linker asks for them)
#   gcc                             the native C baseline of bench/enclave
# Idempotent: a machine that has them all runs no apt command at all.
set -euo pipefail

packages=(bubblewrap clang lld wasi-libc libclang-rt-dev-wasm32 gcc)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${missing[*]}; run this script as root (or sudo) to install them" >&2
    exit 1
fi

echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
