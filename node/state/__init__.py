"""The node's state machine: typed state changes, effects, and pure transitions per role."""
