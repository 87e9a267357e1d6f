#!/usr/bin/env bash
# Rebuilds the committed wasm32-wasi modules from src/ with Debian's clang + wasi-libc
# (tools/system-deps.sh installs them). The .wasm files are committed so that a machine without
# the toolchain still runs the tests; their sha256 is their measurement, so rebuilding with
# another clang changes the measurement (the build is deterministic for one toolchain).
set -euo pipefail
cd "$(dirname "$0")"
for source in src/*.c; do
    name=$(basename "$source" .c)
    clang --target=wasm32-wasi -O2 -Wall -Wl,--strip-all -o "wasm/$name.wasm" "$source"
done
sha256sum wasm/*.wasm
