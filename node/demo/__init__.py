"""`make demo`: confidential AI inference through a local marketplace of separate daemons.

A digit classifier is trained on scikit-learn's handwritten digits and exported to ONNX
(`digits.py`); `capa devnet up` starts anvil, the contracts, a verifier, two providers serving
that model in sim enclaves (INSECURE: no hardware) and a client daemon; `capa job submit`
sends one held-out image through the client daemon, which seals it to the enclave it picks,
pays into escrow, and verifies and decrypts the prediction; the demo then shows the offers,
the escrow and settlement transactions with their gas, the answer against the true label,
and that the image's bytes are in no file a provider, verifier or the chain wrote; `capa
devnet down` stops everything, also after a failure or Ctrl-C (`walkthrough.py`).

A dev tool: nothing the daemon runs imports it.
"""
