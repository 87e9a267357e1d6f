"""A local marketplace for development, tests and the demo: anvil, the contracts governed for
the sim kind, and verifier, provider and client daemons as separate `capa node run`
processes (`capa devnet up|status|logs|down`, or `Devnet` from Python).

A dev tool: nothing the daemon runs imports it.
"""
