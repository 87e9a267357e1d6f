"""Keys: keystore and identity files are 0600, reload to the same keys, fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from node.keys.account import PasswordSource, create_keystore, keystore_address, load_account
from node.keys.errors import (
    KeyFileExists,
    KeyFileInvalid,
    KeyFileMissing,
    PasswordUnavailable,
    WrongPassword,
)
from node.keys.identity import create_identity, load_identity

FAST_SCRYPT = 2**4


def test_keystore_roundtrip_mode_and_wrong_password(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "account.json"
    address = create_keystore(path, "s3cret", kdf_iterations=FAST_SCRYPT)
    assert path.stat().st_mode & 0o777 == 0o600
    assert keystore_address(path) == address
    assert str(load_account(path, "s3cret").address) == address
    with pytest.raises(WrongPassword):
        load_account(path, "guess")
    with pytest.raises(KeyFileExists):
        create_keystore(path, "other", kdf_iterations=FAST_SCRYPT)
    assert "s3cret" not in path.read_text()


def test_keystore_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileMissing, match="capa init"):
        load_account(tmp_path / "absent.json", "x")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(KeyFileInvalid, match=r"junk\.json"):
        load_account(tmp_path / "junk.json", "x")


def test_identity_matches_libp2p_and_never_shows_its_seed(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    identity = create_identity(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_identity(path) == identity
    expected = ID.from_pubkey(create_new_key_pair(identity.seed).public_key).to_base58()
    assert identity.peer_id == expected
    assert identity.seed.hex() not in repr(identity)
    path.write_bytes(b"short")
    with pytest.raises(KeyFileInvalid, match="32-byte"):
        load_identity(path)


def test_password_sources_in_order(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("from-file\n")
    source = PasswordSource("CAPA_TEST_PASSWORD", password_file, prompt=False)
    assert source.read(env={"CAPA_TEST_PASSWORD": "from-env"}) == "from-env"
    assert source.read(env={}) == "from-file"
    with pytest.raises(PasswordUnavailable, match="CAPA_TEST_PASSWORD"):
        PasswordSource("CAPA_TEST_PASSWORD", None, prompt=False).read(env={})
