"""Chain client: contract artifacts, EIP-712 typed data, deployment, transactions."""
