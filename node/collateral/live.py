"""The I/O half of live collateral: HTTP GET with timeouts, entries kept in a directory."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from proofs.collateral_source import (
    CachedCollateralSource,
    CollateralSource,
    CollateralUrls,
    HttpCollateralFetcher,
    HttpResponse,
)
from proofs.errors import CollateralError
from proofs.nvidia_collateral import (
    NVIDIA_OCSP_URL,
    NVIDIA_RIM_SERVICE_URL,
    HttpOcspResponder,
)
from proofs.nvidia_rim import SignedRimSource, rim_service_fetch

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_SAFE_KEY = re.compile(r"[^A-Za-z0-9._-]")


class HttpxGet:
    """GET with a timeout on every network wait and a bound on the body; every transport
    failure becomes CollateralError (the cache then answers from what it holds)."""

    def __init__(self, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None):
        self._client = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False)

    def __call__(self, url: str) -> HttpResponse:
        try:
            with self._client.stream("GET", url) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise CollateralError(f"GET {url}: body exceeds {MAX_RESPONSE_BYTES} bytes")
                return HttpResponse(response.status_code, dict(response.headers), bytes(body))
        except httpx.HTTPError as exc:
            raise CollateralError(f"GET {url}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class DirectoryStore:
    """Cache entries as files, written atomically (a crash leaves the old entry or the new)."""

    directory: Path

    def _path(self, key: str) -> Path:
        # Keys name FMSPCs, products and chip ids; anything else is hashed, never a path.
        safe = _SAFE_KEY.sub("_", key)
        if safe != key or len(safe) > 200:
            safe = hashlib.sha256(key.encode()).hexdigest()
        return self.directory / f"{safe}.json"

    def load(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CollateralError(f"collateral cache {self.directory}: {exc}") from exc

    def save(self, key: str, value: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(handle, "wb") as file:
                file.write(value)
            os.replace(temporary, self._path(key))
        except OSError as exc:
            raise CollateralError(f"collateral cache {self.directory}: {exc}") from exc


@dataclass(frozen=True)
class LiveCollateralConfig:
    """What the verifier role reads from config: where PCS/PCCS and KDS answer, where the
    cache lives, how long a request may take and how far ahead of expiry to refresh."""

    intel_pcs_url: str = CollateralUrls.intel_pcs
    intel_root_ca_crl_url: str = CollateralUrls.intel_root_ca_crl
    amd_kds_url: str = CollateralUrls.amd_kds
    nvidia_rim_url: str = NVIDIA_RIM_SERVICE_URL
    nvidia_ocsp_url: str = NVIDIA_OCSP_URL
    cache_dir: Path | None = None
    timeout_s: float = 10.0
    refresh_before: timedelta = timedelta(hours=6)


def live_collateral_source(
    config: LiveCollateralConfig, transport: httpx.BaseTransport | None = None
) -> CachedCollateralSource:
    fetcher: CollateralSource = HttpCollateralFetcher(
        get=HttpxGet(config.timeout_s, transport),
        urls=CollateralUrls(
            intel_pcs=config.intel_pcs_url,
            intel_root_ca_crl=config.intel_root_ca_crl_url,
            amd_kds=config.amd_kds_url,
        ),
    )
    if config.cache_dir is None:
        return CachedCollateralSource(fetcher, refresh_before=config.refresh_before)
    return CachedCollateralSource(
        fetcher, store=DirectoryStore(config.cache_dir), refresh_before=config.refresh_before
    )


class HttpxPost:
    """POST with a timeout (NVIDIA's OCSP responder); errors become CollateralError."""

    def __init__(self, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None):
        self._client = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False)

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        try:
            response = self._client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise CollateralError(f"POST {url}: {type(exc).__name__}: {exc}") from exc
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise CollateralError(f"POST {url}: body exceeds {MAX_RESPONSE_BYTES} bytes")
        return HttpResponse(response.status_code, dict(response.headers), response.content)


def live_gpu_sources(
    config: LiveCollateralConfig, transport: httpx.BaseTransport | None = None
) -> tuple[SignedRimSource, HttpOcspResponder]:
    """What GPU evidence needs online: RIMs from NVIDIA's RIM service, each verified under the
    pinned RIM root (its chain's OCSP checked too), and the OCSP responder for device chains."""
    ocsp = HttpOcspResponder(HttpxPost(config.timeout_s, transport), config.nvidia_ocsp_url)
    rims = SignedRimSource(
        rim_service_fetch(HttpxGet(config.timeout_s, transport), config.nvidia_rim_url), ocsp=ocsp
    )
    return rims, ocsp
