"""Mutation testing of the code that decides trust: `make mutate [FILE=proofs/policy.py]`.

mutmut makes the mutants and runs the tests against each (one mutant per test run, only the
tests that call the mutated function). This wrapper adds what mutmut lacks for this repository:

- mutmut reads its settings only from the pyproject.toml of the directory it runs in and runs
  every mutant against one test selection. Here each target has its own tests (the committed
  table tools/mutate-targets.toml), so each target is mutated in its own scratch copy under
  build/mutate/ with a generated [tool.mutmut] section; the working tree is never changed.
- A per-file score table and every survivor as file:line with the mutation, and as the last
  line one JSON object of the scores; the exit status is 1 when a target is below its minimum.

Score = (killed + timeout) / (mutants - skipped), mutmut's own definition. What mutmut does not
mutate: code outside functions (module constants, dataclass field defaults) and functions under
a decorator other than @classmethod/@staticmethod (so @property bodies are left alone).

Hypothesis runs with a fixed seed so that a score is reproducible.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS_FILE = ROOT / "tools" / "mutate-targets.toml"
SCRATCH = ROOT / "build" / "mutate"
PACKAGES = ("node", "proofs", "scheduler")
DETECTED = frozenset({"killed", "timeout", "caught by type check"})
NOT_COUNTED = frozenset({"skipped"})
COPY_IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".hypothesis", "node_modules", ".pytest_cache"
)


@dataclass(frozen=True)
class Target:
    path: str
    tests: tuple[str, ...]
    min_score: float

    @property
    def module_prefix(self) -> str:
        """The dotted prefix of the mutant names mutmut gives this target's functions."""
        return self.path.removesuffix(".py").rstrip("/").replace("/", ".") + "."

    @property
    def only_mutate(self) -> str:
        return self.path if self.path.endswith(".py") else self.path.rstrip("/") + "/*.py"


@dataclass(frozen=True)
class Survivor:
    name: str
    status: str
    where: str
    before: str
    after: str

    @property
    def sort_key(self) -> tuple[str, int]:
        path, _, line = self.where.rpartition(":")
        return path, int(line) if line.isdigit() else 0


@dataclass
class Outcome:
    target: Target
    statuses: dict[str, str]
    survivors: list[Survivor] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for found in self.statuses.values() if found == status)

    @property
    def counted(self) -> int:
        return sum(1 for status in self.statuses.values() if status not in NOT_COUNTED)

    @property
    def detected(self) -> int:
        return sum(1 for status in self.statuses.values() if status in DETECTED)

    @property
    def score(self) -> float:
        return 100.0 * self.detected / self.counted if self.counted else 0.0

    @property
    def passed(self) -> bool:
        return self.counted > 0 and self.score >= self.target.min_score

    def per_file(self) -> list[tuple[str, Outcome]]:
        """A package target's outcome split by file (its score stays the package's)."""
        by_module: dict[str, dict[str, str]] = {}
        for name, status in self.statuses.items():
            module = name.rpartition(".")[0]
            by_module.setdefault(module, {})[name] = status
        return [
            (module.replace(".", "/") + ".py", Outcome(self.target, statuses))
            for module, statuses in sorted(by_module.items())
        ]


def load_targets() -> list[Target]:
    raw = tomllib.loads(TARGETS_FILE.read_text())
    return [
        Target(entry["path"], tuple(entry["tests"]), float(entry.get("min_score", 0)))
        for entry in raw["target"]
    ]


def select(targets: list[Target], wanted: list[str]) -> list[Target]:
    by_path = {target.path.rstrip("/"): target for target in targets}
    chosen = []
    for path in wanted:
        key = path.removeprefix("./").rstrip("/")
        if key not in by_path:
            known = ", ".join(sorted(by_path))
            raise SystemExit(
                f"mutate: {path} has no entry in {TARGETS_FILE.relative_to(ROOT)} "
                f"(it names the tests to run); known targets: {known}"
            )
        chosen.append(by_path[key])
    return chosen


def prepare_scratch(target: Target) -> Path:
    """A copy of the packages and tests with a [tool.mutmut] section for this target only."""
    for test in target.tests:
        if not (ROOT / test.split("::")[0]).exists():
            raise SystemExit(f"mutate: {target.path}: test path {test} does not exist")
    scratch = SCRATCH / target.path.rstrip("/").replace("/", "__")
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    for package in (*PACKAGES, "tests"):
        shutil.copytree(ROOT / package, scratch / package, ignore=COPY_IGNORE)
    settings = {
        "source_paths": list(PACKAGES),
        "only_mutate": [target.only_mutate],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "--hypothesis-seed=0"],
        "pytest_add_cli_args_test_selection": list(target.tests),
    }
    section = "\n[tool.mutmut]\n" + "".join(
        f"{key} = {json.dumps(value)}\n" for key, value in settings.items()
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    (scratch / "pyproject.toml").write_text(pyproject + section)
    return scratch


def mutmut(scratch: Path, *args: str, log: Path | None = None) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"mutate: mutmut {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout
    with log.open("w") as out:
        ran = subprocess.run(
            command, cwd=scratch, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if ran.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"mutate: mutmut {' '.join(args)} failed (log {log}):\n{tail}")
    return ""


def function_start(source: str, mangled: str) -> int | None:
    """The first line of the function mutmut names ``x_func`` or ``xǁClassǁmethod``."""
    parts = mangled.removeprefix("x").split("ǁ")
    if len(parts) == 1:
        owner, name = None, parts[0].removeprefix("_")
    else:
        owner, name = parts[1], parts[2]
    tree = ast.parse(source)
    scope: list[ast.stmt] = tree.body
    if owner is not None:
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner]
        if not classes:
            return None
        scope = classes[0].body
    for node in scope:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return None


# One process for every survivor's diff: `mutmut show` takes seconds a mutant to start.
_DIFFS_SCRIPT = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name) for name in json.loads(sys.stdin.read())}))
"""


def mutant_diffs(scratch: Path, names: list[str]) -> dict[str, str]:
    """The unified diff (of the mutated function) of each mutant, as `mutmut show` prints it."""
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS_SCRIPT],
        cwd=scratch,
        input=json.dumps(names),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        diffs: dict[str, str] = json.loads(done.stdout)
        return diffs
    # mutmut moved its internals: the public command gives the same diff, one process each.
    return {name: mutmut(scratch, "show", name) for name in names}


def describe(scratch: Path, name: str, status: str, diff_text: str) -> Survivor:
    """Where a mutant sits in the original file and what it changed."""
    module, _, rest = name.rpartition(".")
    mangled = rest.split("__mutmut_")[0]
    relative = module.replace(".", "/") + ".py"
    source = (scratch / relative).read_text()
    diff = diff_text.splitlines()
    hunk_start = next((line for line in diff if line.startswith("@@")), None)
    removed = [
        line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")
    ]
    added = [
        line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")
    ]
    line_no = "?"
    start = function_start(source, mangled)
    if start is not None and hunk_start is not None:
        # Lines of the diff body count from the function's first line.
        first_hunk_line = int(hunk_start.split()[1].split(",")[0].lstrip("-"))
        body = diff[diff.index(hunk_start) + 1 :]
        offset = next(i for i, line in enumerate(body) if line.startswith(("-", "+")))
        line_no = str(start + first_hunk_line - 1 + offset)
    before, after = " / ".join(removed), " / ".join(added) or "(removed)"
    if removed and added and len(removed) == len(added) == 1:
        before, after = shorten_pair(removed[0], added[0])
    return Survivor(name, status, f"{relative}:{line_no}", before, after)


def shorten_pair(before: str, after: str, context: int = 24) -> tuple[str, str]:
    """Trim a long line pair to the part that differs, with a little context either side."""
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    blocks = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if not blocks or max(len(before), len(after)) <= 80:
        return before, after
    a_start = max(0, blocks[0][1] - context)
    a_end = min(len(before), blocks[-1][2] + context)
    b_start = max(0, blocks[0][3] - context)
    b_end = min(len(after), blocks[-1][4] + context)

    def cut(text: str, start: int, end: int) -> str:
        return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")

    return cut(before, a_start, a_end), cut(after, b_start, b_end)


def run_target(target: Target, jobs: int) -> Outcome:
    began = time.monotonic()
    scratch = prepare_scratch(target)
    print(f"mutate: {target.path} against {' '.join(target.tests)}", flush=True)
    log = scratch / "mutmut-run.log"
    mutmut(scratch, "run", "--max-children", str(jobs), log=log)
    statuses = {}
    for line in mutmut(scratch, "results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name.startswith(target.module_prefix):
            statuses[name] = status
    outcome = Outcome(target, statuses)
    undetected = {n: s for n, s in statuses.items() if s not in DETECTED | NOT_COUNTED}
    diffs = mutant_diffs(scratch, list(undetected))
    outcome.survivors = [
        describe(scratch, name, status, diffs[name]) for name, status in undetected.items()
    ]
    outcome.survivors.sort(key=lambda survivor: survivor.sort_key)
    outcome.seconds = time.monotonic() - began
    return outcome


def report(outcomes: list[Outcome]) -> None:
    print()
    header = ("file", "mutants", "killed", "timeout", "survived", "score", "min", "time")
    print("{:<28} {:>7} {:>6} {:>7} {:>8} {:>7} {:>5} {:>6}".format(*header))
    row = "{:<28} {:>7} {:>6} {:>7} {:>8} {:>6.1f}%"
    for o in outcomes:
        print(
            row.format(
                o.target.path,
                o.counted,
                o.count("killed"),
                o.count("timeout"),
                o.counted - o.detected,
                o.score,
            )
            + f" {o.target.min_score:>4.0f}% {o.seconds:>5.0f}s"
            + ("" if o.passed else "  BELOW")
        )
        if not o.target.path.endswith(".py"):
            for path, part in o.per_file():
                print(
                    row.format(
                        "  " + path,
                        part.counted,
                        part.count("killed"),
                        part.count("timeout"),
                        part.counted - part.detected,
                        part.score,
                    )
                )
    for o in outcomes:
        if not o.survivors:
            continue
        print(f"\nsurvivors in {o.target.path}:")
        for s in o.survivors:
            status = "" if s.status == "survived" else f" [{s.status}]"
            print(f"  {s.where}{status}  {s.before}  ->  {s.after}")
    print(
        json.dumps(
            {
                o.target.path: {
                    "score": round(o.score, 1),
                    "mutants": o.counted,
                    "killed": o.count("killed"),
                    "timeout": o.count("timeout"),
                    "min": o.target.min_score,
                }
                for o in outcomes
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="targets to mutate (default: every target)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("MUTATE_JOBS", os.cpu_count() or 1)),
        help="mutants run at once (default: MUTATE_JOBS or the number of CPUs)",
    )
    args = parser.parse_args()
    targets = load_targets()
    chosen = select(targets, args.files) if args.files else targets
    outcomes = [run_target(target, args.jobs) for target in chosen]
    report(outcomes)
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
