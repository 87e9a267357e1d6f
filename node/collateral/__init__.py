"""Live collateral: Intel PCS/PCCS and AMD KDS over HTTP, cached on disk.

`proofs.collateral_source` holds the fetcher (URLs, headers, parsing) and the cache policy
(keys, nextUpdate, refresh ahead, answering from cache while the service is down); this package
gives them their I/O: an HTTP GET with timeouts and a directory to keep entries in. The
verifier role builds one source from config with `live_collateral_source`.
"""

from node.collateral.live import (
    DirectoryStore,
    HttpxGet,
    HttpxPost,
    LiveCollateralConfig,
    live_collateral_source,
    live_gpu_sources,
)

__all__ = [
    "DirectoryStore",
    "HttpxGet",
    "HttpxPost",
    "LiveCollateralConfig",
    "live_collateral_source",
    "live_gpu_sources",
]
