"""The enclave runtime: one backend interface, sandboxed workloads (wasm, onnx, exec), sealed
input and output, attesters, and detection of what this machine can do.

The daemon talks to an `EnclaveBackend` and the `EnclaveInstance`s it creates; private keys and
plaintext stay behind that interface (see `backend`).
"""
