"""State changes persisted per second, and replay time, on the node's SQLite store.

Run: `.venv/bin/python bench/store/run.py [--changes 20000] [--replay 100000]`.
"Per change" commits every change in its own transaction with the effects it produced
(the worst case: one input at a time). "Batched" is what the state service does when
inputs queue up: drain up to 256 and commit them together (each still atomic with its
effects). Replay rebuilds the in-memory state from the store through the same pure
transitions, without and with a snapshot. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.config.model import Role
from node.daemon.state_service import StateService, rebuild_state
from node.metrics import Metrics
from node.state import changes as sc
from node.state.model import Identity
from node.state.values import Address, BlockNumber, Hash32, JobId, TxHash
from node.store.store import Store

GOAL_PER_SECOND = 5_000
ME = Identity(Role.PROVIDER, Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"))
CLIENT = Address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
H = Hash32("0x" + "22" * 32)


def job_lifecycle(i: int) -> list[sc.StateChange]:
    """A job's three changes as a provider sees them: matched, executed, settled."""
    job = JobId("0x" + f"{i:064x}")
    tx = TxHash("0x" + f"{i:064x}")
    return [
        sc.JobMatched(BlockNumber(i), H, tx, "m", job, CLIENT, ME.address, 10**17, 10**9, H, H),
        sc.JobExecuted(job, H, "0x" + "44" * 65),
        sc.JobSettled(BlockNumber(i + 2), H, tx, "s", job, ME.address, H, 99 * 10**15),
    ]


def changes(count: int) -> list[sc.StateChange]:
    out: list[sc.StateChange] = []
    i = 0
    while len(out) < count:
        i += 1
        out.extend(job_lifecycle(i))
    return out[:count]


def service(path: Path, snapshot_every: int = 10**9) -> StateService:
    store = Store.open(path)
    return StateService(
        store, ME, rebuild_state(store, ME), Metrics(), snapshot_every=snapshot_every
    )


def per_change(directory: Path, count: int) -> float:
    target = service(directory / "per_change.sqlite")
    items = changes(count)
    started = time.perf_counter()
    for change in items:
        target.apply_now([change])
    elapsed = time.perf_counter() - started
    target.store.close()
    return count / elapsed


def batched(directory: Path, count: int, batch: int = 256) -> float:
    target = service(directory / "batched.sqlite")
    items = changes(count)
    started = time.perf_counter()
    for start in range(0, count, batch):
        target.apply_now(items[start : start + batch])
    elapsed = time.perf_counter() - started
    target.store.close()
    return count / elapsed


def replay(directory: Path, count: int) -> tuple[float, float, int]:
    path = directory / "replay.sqlite"
    writer = service(path)
    items = changes(count)
    for start in range(0, count, 1000):
        writer.apply_now(items[start : start + 1000])
    expected = writer.state
    writer.store.close()

    store = Store.open(path)
    started = time.perf_counter()
    rebuilt = rebuild_state(store, ME)
    full = time.perf_counter() - started
    assert rebuilt == expected, "replay must rebuild exactly the state that was recorded"
    store.save_snapshot(rebuilt)
    # The snapshot's cost is paid by the running daemon every `snapshot_every` changes.
    started = time.perf_counter()
    again = rebuild_state(store, ME)
    from_snapshot = time.perf_counter() - started
    assert again == expected
    store.close()
    return full, from_snapshot, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--replay", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        single = per_change(directory, args.changes)
        grouped = batched(directory, args.changes)
        full, from_snapshot, size = replay(directory, args.replay)
    print(
        f"store bench: SQLite WAL, synchronous=NORMAL; {args.changes} changes, replay of {args.replay}"
    )
    print(f"{'measure':<44}{'value':>14}")
    print(f"{'changes/s, one transaction per change':<44}{single:>14,.0f}")
    print(f"{'changes/s, batches of 256 (queue draining)':<44}{grouped:>14,.0f}")
    print(f"{f'replay {args.replay:,} changes, no snapshot (s)':<44}{full:>14.2f}")
    print(f"{'replay from a snapshot at the end (s)':<44}{from_snapshot:>14.3f}")
    print(f"{'store size (MB)':<44}{size / 2**20:>14.1f}")
    verdict = "met" if single >= GOAL_PER_SECOND else "NOT met"
    print(f"goal >= {GOAL_PER_SECOND:,} changes/s with one transaction per change: {verdict}")
    figures = {
        "changes_per_s_single": round(single),
        "changes_per_s_batched": round(grouped),
        "replay_changes": args.replay,
        "replay_s": round(full, 3),
        "replay_from_snapshot_s": round(from_snapshot, 4),
        "store_mb": round(size / 2**20, 1),
        "goal_changes_per_s": GOAL_PER_SECOND,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
