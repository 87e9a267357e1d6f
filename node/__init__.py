"""The CapaCloud daemon: the only package with I/O (config, keys, chain, p2p, enclave, API, CLI)."""

__version__ = "0.1.0"
