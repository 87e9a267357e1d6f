"""The Ethereum account: an eth-account (Web3 Secret Storage v3) keystore file."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.keys.errors import KeyFileInvalid, KeyFileMissing, PasswordUnavailable, WrongPassword
from node.keys.files import write_secret_file
from node.state.values import Address, to_address


@dataclass(frozen=True)
class PasswordSource:
    """Where the keystore password comes from, in order: env variable, file, prompt.

    `file_setting` is how the user names the file where the password is read from (the
    config key, or a command's flag), so that a missing password says what to set."""

    env_var: str | None
    file: Path | None = None
    prompt: bool = True
    file_setting: str = "keys.password_file"

    @classmethod
    def from_flag(
        cls, file: Path | None, env_var: str = "CAPA_KEYSTORE_PASSWORD"
    ) -> PasswordSource:
        """For a command's `--password-file`: a file named on the command line wins over the
        environment (an exported variable must not override what was just typed)."""
        if file is not None:
            return cls(None, file, file_setting="--password-file FILE")
        return cls(env_var, None, file_setting="--password-file FILE")

    def read(
        self,
        env: Mapping[str, str] | None = None,
        ask: Callable[[str], str] = getpass.getpass,
        *,
        confirm: bool = False,
    ) -> str:
        environ = os.environ if env is None else env
        if self.env_var and environ.get(self.env_var):
            return environ[self.env_var]
        if self.file is not None:
            try:
                text = self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise PasswordUnavailable(
                    f"password file {self.file} cannot be read: {exc.strerror}"
                ) from exc
            if text:
                return text
            raise PasswordUnavailable(f"password file {self.file} is empty")
        if self.prompt and sys.stdin.isatty():
            first = ask("Keystore password: ")
            if confirm and ask("Repeat the password: ") != first:
                raise PasswordUnavailable("the two passwords differ")
            if first:
                return first
        raise PasswordUnavailable(
            f"no keystore password: set {self.env_var or 'CAPA_KEYSTORE_PASSWORD'}, or "
            f"{self.file_setting}, or run interactively"
        )


def create_keystore(path: Path, password: str, *, kdf_iterations: int | None = None) -> Address:
    """A fresh account encrypted with scrypt (eth-account's parameters unless given)."""
    account = Account.create()
    keystore = Account.encrypt(account.key, password, kdf="scrypt", iterations=kdf_iterations)
    write_secret_file(path, json.dumps(keystore, indent=2).encode())
    return to_address(account.address)


def keystore_address(path: Path) -> Address:
    """The address a keystore holds, without decrypting it."""
    raw = _read_keystore(path)
    address = raw.get("address")
    if not isinstance(address, str):
        raise KeyFileInvalid(f"keystore {path} names no address")
    return to_address(address if address.startswith("0x") else "0x" + address)


def load_account(path: Path, password: str) -> LocalAccount:
    raw = _read_keystore(path)
    try:
        key = Account.decrypt(raw, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPassword(f"keystore {path} did not open with the password given") from exc
        raise KeyFileInvalid(f"keystore {path} is malformed: {exc}") from exc
    account: LocalAccount = Account.from_key(key)
    return account


def _read_keystore(path: Path) -> dict[str, object]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeyFileMissing(f"keystore {path} not found: create it with `capa init`") from exc
    except (OSError, ValueError) as exc:
        raise KeyFileInvalid(f"keystore {path} is not a JSON keystore: {exc}") from exc
    if not isinstance(raw, dict) or ("crypto" not in raw and "Crypto" not in raw):
        raise KeyFileInvalid(f"keystore {path} is not a Web3 Secret Storage keystore")
    return raw
