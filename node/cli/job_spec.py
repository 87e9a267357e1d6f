"""A job spec file: everything `capa job submit`'s flags say, in TOML, so a job can be kept in
a repository next to its workload.

    wasm = "upper.wasm"          # or onnx = "model.onnx", or exec = "rootfs/" and argv = "..."
    input = "words.txt"
    output = "words.out"
    tee = ["tdx", "sev-snp"]     # or "tdx,sev-snp"
    max_price = "0.01eth"
    timeout = 600                # seconds from matching to the deadline
    cpu_cores = 1
    memory_mib = 256

Paths are relative to the spec file's folder. A flag given on the command line wins over the
file. An unknown key or a value of the wrong type is a usage error naming the key and the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from node.cli.output import CommandFailed, ExitCode

_PATHS = ("wasm", "onnx", "exec", "input", "output")
_TEXTS = ("argv",)
_NUMBERS = ("timeout", "cpu_cores", "memory_mib")


@dataclass(frozen=True)
class JobSpec:
    """What a job asks for; None where neither the file nor a flag says."""

    wasm: Path | None = None
    onnx: Path | None = None
    exec: Path | None = None
    argv: str | None = None
    input: Path | None = None
    output: Path | None = None
    tee: str | None = None
    max_price: str | None = None
    timeout: int | None = None
    cpu_cores: int | None = None
    memory_mib: int | None = None

    def overridden_by(self, flags: JobSpec) -> JobSpec:
        """This spec with every value the flags give replacing the file's."""
        given = {f.name: getattr(flags, f.name) for f in fields(flags)}
        return replace(self, **{k: v for k, v in given.items() if v is not None})


KEYS = tuple(f.name for f in fields(JobSpec))


def load_spec(path: Path) -> JobSpec:
    """The spec in `path`; CommandFailed (exit 2) naming the file and the key when it is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CommandFailed(
            f"cannot read the job spec {path}: {exc.strerror or exc}", code=ExitCode.USAGE
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CommandFailed(f"{path}: not TOML: {exc}", code=ExitCode.USAGE) from exc
    return spec_from(data, path)


def spec_from(data: dict[str, object], path: Path) -> JobSpec:
    base = path.parent
    values: dict[str, object] = {}
    for key, value in data.items():
        if key not in KEYS:
            raise CommandFailed(
                f"{path}: unknown key {key!r}",
                hint=f"a job spec takes {', '.join(KEYS)}",
                code=ExitCode.USAGE,
            )
        values[key] = _checked(key, value, path, base)
    return JobSpec(**values)  # type: ignore[arg-type]


def _wrong(key: str, value: object, wanted: str, path: Path) -> CommandFailed:
    return CommandFailed(
        f"{path}: {key} = {value!r}: expected {wanted}, not {_type_name(value)}",
        code=ExitCode.USAGE,
    )


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "text"}
    names |= {list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _checked(key: str, value: object, path: Path, base: Path) -> object:
    if key in _PATHS:
        if not isinstance(value, str) or not value:
            raise _wrong(key, value, "a path (text)", path)
        return base / Path(value).expanduser()
    if key in _TEXTS:
        if not isinstance(value, str):
            raise _wrong(key, value, "text", path)
        return value
    if key in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _wrong(key, value, "a positive integer", path)
        return value
    if key == "tee":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        raise _wrong(key, value, 'TEE kinds ("tdx,sev-snp" or ["tdx", "sev-snp"])', path)
    assert key == "max_price"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _wrong(key, value, 'an amount ("0.01eth", "5gwei" or wei)', path)
    return str(value)
