# Two commands on a fresh machine: `make demo` and `make test`. Everything else is
# installed here: a .venv from pyproject.toml and the npm toolchain pinned in
# package-lock.json (solcjs behind tools/solc, anvil, forge, OpenZeppelin).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FORGE := node_modules/@foundry-rs/forge-linux-amd64/bin/forge
ANVIL := node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
export PATH := $(CURDIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin:$(CURDIR)/node_modules/@foundry-rs/forge-linux-amd64/bin:$(PATH)

.PHONY: all deps system-deps contracts check-artifacts test test-forge slither lint typecheck pytest fuzz demo bench-gas mutate clean docker-image test-docker test-compose config-reference

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The dev extra includes the demo's (the suite runs the demo), so this stands for both.
$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(BIN)/.demo-installed

# `make demo` installs what it uses and no more: the runtime and the demo extra (no dev
# tools), the system packages the sandbox needs, and the npm toolchain (anvil).
$(BIN)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
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

# Slither over contracts/src, compiled by forge through tools/solc (no compiler download) into
# its own out/cache, so the forge test build is left alone. Settings: slither.config.json.
# A finding is fixed, or accepted where it stands with `slither-disable-next-line` and its
# reason, or belongs to a detector excluded here, each for this reason:
#   timestamp            deadlines, expiries and unbonding are times by design; a block's time
#                        can drift by seconds, every window here is minutes to days long.
#   assembly             JobMarket hashes its EIP-712 structs and writes new jobs in assembly
#                        for gas; each block says why and is covered by the digest tests.
#   naming-convention    immutables are named like constants (SLASH_BPS, MARKET): that is how
#                        the ABI, the tests and the Python side know them.
#   pragma               our sources pin 0.8.30; the other pragmas are OpenZeppelin's,
#                        compiled by the same pinned compiler.
#   uninitialized-local  Solidity zeroes locals; accumulators and "none yet" values rely on it.
# Slither 0.11.6 logs that it cannot build its IR for OpenZeppelin's ReentrancyGuardTransient
# (transient storage): those are log lines about the dependency, not findings.
SLITHER_EXCLUDE := timestamp,assembly,naming-convention,pragma,uninitialized-local

# The integration example (contracts/examples) is analysed too, in a run of its own: people
# copy it, so it meets the bar of the contracts it calls. It declares its own interface of the
# market, so this run compiles only the example (and OpenZeppelin's ECDSA), not contracts/src
# a second time.
slither: deps
	FOUNDRY_OUT=contracts/.slither/out FOUNDRY_CACHE_PATH=contracts/.slither/cache \
		$(BIN)/slither . --config-file slither.config.json --exclude $(SLITHER_EXCLUDE)
	FOUNDRY_SRC=contracts/examples FOUNDRY_OUT=contracts/.slither/examples-out \
		FOUNDRY_CACHE_PATH=contracts/.slither/examples-cache \
		$(BIN)/slither . --config-file slither.config.json --exclude $(SLITHER_EXCLUDE)

lint: deps
	$(BIN)/ruff check node proofs scheduler tests bench tools
	$(BIN)/ruff format --check node proofs scheduler tests bench tools

typecheck: deps
	$(BIN)/mypy

pytest: deps
	$(BIN)/pytest -q

test: deps test-forge slither lint typecheck pytest

# The long random search over the evidence and collateral parsers and verifiers (the tests
# marked fuzz; profiles in tests/conftest.py): FUZZ_EXAMPLES examples per property (default
# 20000), a fresh random seed per run unless SEED is given. `make test` runs the same
# properties derandomized, with their found failures kept as @example regressions.
FUZZ_EXAMPLES ?= 20000
fuzz: deps
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -m fuzz -q --timeout=0 \
		$(if $(SEED),--hypothesis-seed=$(SEED))

# DEMO_FLAGS: e.g. `--dir DIR` (default .demo) or `--image N` (which held-out digit).
demo: system-deps $(BIN)/.demo-installed node_modules/.installed
	$(BIN)/python -m node.demo $(DEMO_FLAGS)

# The node image, built with no registry and no package index inside the build: Debian's
# engine started if no Docker answers (tools/docker-env.sh; `tools/docker-env.sh down` stops
# it), a debootstrap base and a host-built wheelhouse (tools/docker-image.sh).
DOCKER_IMAGE ?= capacloud/node:dev
docker-image: deps
	eval "$$(bash tools/docker-env.sh up)" && bash tools/docker-image.sh build $(DOCKER_IMAGE)

# The container tests alone (pytest -m docker): they build the image of this checkout.
test-docker: deps
	$(BIN)/pytest -q -m docker

# docs/configuration.md is written from the config loader's schema; a unit test fails while
# the committed page differs from what this writes.
config-reference: $(BIN)/.installed
	$(BIN)/python -m node.config.reference > docs/configuration.md

# The marketplace of docker-compose.yml in containers, a wasm job from the host settled on
# chain, and nothing left after `down` (builds the image of this checkout as test-docker does).
test-compose: deps
	$(BIN)/pytest -q -m docker tests/e2e/docker/test_docker_marketplace.py

bench-gas: deps
	$(BIN)/python bench/gas/run.py

# Mutation testing of the deciding code (not part of `make test`: minutes per file).
# `make mutate` runs every target in tools/mutate-targets.toml; `make mutate FILE=proofs/policy.py`
# one of them. MUTATE_JOBS=N limits the mutants run at once (default: one per CPU).
mutate: $(BIN)/.installed
	$(BIN)/python tools/mutate.py $(FILE)

clean:
	rm -rf contracts/out contracts/cache contracts/.slither .pytest_cache .mypy_cache .ruff_cache build/mutate
