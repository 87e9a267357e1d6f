"""Finding our own errors inside trio's exception groups, which wrap what a task raised."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


def first_of(exc: BaseException, kinds: type[E] | tuple[type[E], ...]) -> E | None:
    """`exc` itself, or the first exception inside its groups (depth first), that is one of
    `kinds`; None when there is none."""
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_of(inner, kinds)
            if found is not None:
                return found
    return None
