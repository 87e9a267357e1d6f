# The CapaCloud node image: `capa` (daemon and CLI) and anvil, the devnet chain.
#
#   make docker-image                   a local Debian base and a host-built wheelhouse: needs no
#                                       registry and no package index inside the build
#   docker build -t capacloud/node .    the official Python slim image and the package index
#                                       (run `make deps` first: the image carries anvil from
#                                       node_modules)
#
# BASE_IMAGE  a Debian-based image with python3 >= 3.11 and its venv module.
# WHEELHOUSE  a folder in the build context with every wheel the project needs (see
#             tools/docker-image.sh); when set, pip installs from it alone and fetches nothing.
#
# Few layers on purpose: engines with the vfs driver (CI) store every layer as a full copy.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
LABEL org.capacloud.stage=build
ARG WHEELHOUSE=
COPY . /tmp/context
RUN set -eu; \
    cd /tmp/context; \
    test -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil \
      || { echo "no anvil in node_modules: run 'make deps' before building" >&2; exit 1; }; \
    if [ -n "$WHEELHOUSE" ]; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS="/tmp/context/$WHEELHOUSE"; \
    else \
      # fastecdsa (from libp2p) ships no wheel for Linux: it compiles against GMP, and
      # against Python's headers, which the official images carry and Debian's python3 lacks.
      packages="gcc libc6-dev libgmp-dev"; \
      python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || packages="$packages python3-dev"; \
      apt-get update; \
      apt-get install -y --no-install-recommends $packages; \
    fi; \
    app=/opt/capacloud; \
    mkdir -p "$app/src/contracts" "$app/bin"; \
    cp -r node proofs scheduler workloads pyproject.toml README.md "$app/src/"; \
    cp -r contracts/artifacts "$app/src/contracts/"; \
    cp node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil "$app/bin/"; \
    python3 -m venv "$app/venv"; \
    # Editable: node/ finds the contract artifacts and workloads beside its sources.
    "$app/venv/bin/pip" install --no-cache-dir --disable-pip-version-check -e "$app/src"; \
    "$app/venv/bin/python" -m compileall -q "$app/src"; \
    "$app/venv/bin/capa" --version; \
    rm -rf /tmp/context

FROM ${BASE_IMAGE}
# Metadata first, while the image is small: the classic builder copies the whole image for
# each instruction on vfs.
ENV PATH=/opt/capacloud/venv/bin:/opt/capacloud/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["capa"]
CMD ["--help"]
# bubblewrap for the job sandboxes, installed only if the base lacks it; the unprivileged
# user a root daemon runs jobs as (as tools/system-deps.sh makes on a host).
RUN set -eu; \
    if ! command -v bwrap >/dev/null; then \
      apt-get update; \
      apt-get install -y --no-install-recommends bubblewrap; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    getent passwd capacloud-sandbox >/dev/null || useradd --system --user-group --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin --comment "CapaCloud sandboxed jobs" \
      capacloud-sandbox
COPY --from=build /opt/capacloud /opt/capacloud
