# Two commands on a fresh machine: `make demo` and `make test`. Everything else is
# installed here: a .venv from pyproject.toml and the npm toolchain pinned in
# package-lock.json (solcjs behind tools/solc, anvil, forge, OpenZeppelin).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FORGE := node_modules/@foundry-rs/forge-linux-amd64/bin/forge
ANVIL := node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
export PATH := $(CURDIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin:$(CURDIR)/node_modules/@foundry-rs/forge-linux-amd64/bin:$(PATH)

.PHONY: all deps system-deps contracts check-artifacts test test-forge lint typecheck pytest demo bench-gas clean docker-image test-docker

all: test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Debian packages the enclave sandboxes need (bubblewrap; clang + wasi-libc for wasm builds).
system-deps:
	bash tools/system-deps.sh

# js-libp2p for the interop acceptance test (tests/integration/p2p), pinned in its own lockfile.
tests/interop/js/node_modules/.installed: tests/interop/js/package.json tests/interop/js/package-lock.json
	cd tests/interop/js && npm ci --no-audit --no-fund
	touch $@

deps: system-deps $(BIN)/.installed node_modules/.installed tests/interop/js/node_modules/.installed

# Rebuild the committed ABI + bytecode artifacts the Python side loads.
contracts: deps
	$(FORGE) build
	$(BIN)/python tools/export_artifacts.py

test-forge: deps
	$(FORGE) test

lint: deps
	$(BIN)/ruff check node proofs scheduler tests bench tools
	$(BIN)/ruff format --check node proofs scheduler tests bench tools

typecheck: deps
	$(BIN)/mypy

pytest: deps
	$(BIN)/pytest -q

test: deps test-forge lint typecheck pytest

demo: deps
	$(BIN)/python -m node.demo

# The node image, built with no registry and no package index inside the build: Debian's
# engine started if no Docker answers (tools/docker-env.sh; `tools/docker-env.sh down` stops
# it), a debootstrap base and a host-built wheelhouse (tools/docker-image.sh).
DOCKER_IMAGE ?= capacloud/node:dev
docker-image: deps
	eval "$$(bash tools/docker-env.sh up)" && bash tools/docker-image.sh build $(DOCKER_IMAGE)

# The container tests alone (pytest -m docker): they build the image of this checkout.
test-docker: deps
	$(BIN)/pytest -q -m docker

bench-gas: deps
	$(BIN)/python bench/gas/run.py

clean:
	rm -rf contracts/out contracts/cache .pytest_cache .mypy_cache .ruff_cache
