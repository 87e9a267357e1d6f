"""What stops the demo, in its words."""

from __future__ import annotations


class DemoFailed(Exception):
    """A step of the demo failed; the message says which and why, in one line or a few."""
