"""Encrypted credentials: round trip, the full key-rotation procedure, name binding, tampering, bad keys."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_core.core.errors import CoreError, CredentialError
from shared_core.security.cipher import (
    CredentialCipher,
    credential_name,
    generate_key,
    parse_key_list,
    redact,
)


def key(n: int) -> str:
    """A fixed Fernet key, so the tests are reproducible."""
    return base64.urlsafe_b64encode(bytes([n]) * 32).decode()


OLD, NEW, NEWER = key(1), key(2), key(3)
AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SECRETS = {
    credential_name("acme", "databricks_token"): "dapi0123456789abcdef0123456789abcdef",
    credential_name("acme", "github_token"): "ghp_" + "A" * 36,
    credential_name("acme", "webhook_secret"): "s3cr3t-with-ünïcode-✓",
    credential_name("globex", "databricks_token"): "dapiffffffffffffffffffffffffffffffff",
    credential_name("globex", "empty"): "",
}


def test_round_trip() -> None:
    cipher = CredentialCipher([NEW])
    for name, value in SECRETS.items():
        token = cipher.encrypt(name, value)
        assert not value or value not in token
        assert cipher.decrypt(name, token) == value
        assert not cipher.needs_rotation(token)


def test_encrypt_at_time_pins_the_timestamp() -> None:
    cipher = CredentialCipher([NEW])
    token = cipher.encrypt_at_time("acme/x", "v", AT)
    assert Fernet(NEW).extract_timestamp(token.encode()) == int(AT.timestamp())
    assert cipher.decrypt("acme/x", token) == "v"
    with pytest.raises(ValueError):
        cipher.encrypt_at_time("acme/x", "v", datetime(2024, 3, 1))


def test_rotation_keeps_every_credential_readable() -> None:
    """old only -> new added first -> rotate all -> old dropped -> every credential still reads."""
    stored = {name: CredentialCipher([OLD]).encrypt_at_time(name, value, AT) for name, value in SECRETS.items()}

    both = CredentialCipher([NEW, OLD])
    assert all(both.decrypt(name, token) == SECRETS[name] for name, token in stored.items())
    assert all(both.needs_rotation(token) for token in stored.values())
    fresh = both.encrypt("acme/new_one", "n")
    assert not both.needs_rotation(fresh)
    assert CredentialCipher([NEW]).decrypt("acme/new_one", fresh) == "n"  # new writes use the new key

    stored = {name: both.rotate(token, name=name) for name, token in stored.items()}
    assert not any(both.needs_rotation(token) for token in stored.values())

    new_only = CredentialCipher([NEW])
    assert all(new_only.decrypt(name, token) == SECRETS[name] for name, token in stored.items())
    for token in stored.values():  # the token's timestamp survives rotation
        assert Fernet(NEW).extract_timestamp(token.encode()) == int(AT.timestamp())
    with pytest.raises(CredentialError):
        CredentialCipher([OLD]).decrypt(next(iter(stored)), next(iter(stored.values())))


def test_rotate_without_a_name_keeps_the_binding() -> None:
    token = CredentialCipher([OLD]).encrypt("acme/a", "value")
    rotated = CredentialCipher([NEW, OLD]).rotate(token)
    assert CredentialCipher([NEW]).decrypt("acme/a", rotated) == "value"
    with pytest.raises(CredentialError):
        CredentialCipher([NEW]).decrypt("acme/b", rotated)


def test_rotating_twice_through_three_keys() -> None:
    token = CredentialCipher([OLD]).encrypt("acme/a", "value")
    token = CredentialCipher([NEW, OLD]).rotate(token)
    token = CredentialCipher([NEWER, NEW]).rotate(token)
    assert CredentialCipher([NEWER]).decrypt("acme/a", token) == "value"


def test_a_retired_key_gives_the_documented_message() -> None:
    token = CredentialCipher([OLD]).encrypt("acme/databricks_token", SECRETS["acme/databricks_token"])
    cipher = CredentialCipher([NEW])
    calls: tuple[Callable[[], str], ...] = (
        lambda: cipher.decrypt("acme/databricks_token", token),
        lambda: cipher.rotate(token, name="acme/databricks_token"),
    )
    for call in calls:
        with pytest.raises(CredentialError) as caught:
            call()
        assert str(caught.value).startswith(
            "cannot decrypt credential 'acme/databricks_token': wrong or retired key; add the old key back to the key list"
        )
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(CredentialError) as caught:
        cipher.needs_rotation(token)
    assert "wrong or retired key" in str(caught.value)


def test_a_ciphertext_swapped_between_names_is_refused() -> None:
    cipher = CredentialCipher([NEW])
    tokens = {name: cipher.encrypt(name, value) for name, value in SECRETS.items()}
    for name in SECRETS:
        for other, token in tokens.items():
            if other == name:
                continue
            with pytest.raises(CredentialError) as caught:
                cipher.decrypt(name, token)
            assert "encrypted for another credential" in str(caught.value)
            assert not SECRETS[other] or SECRETS[other] not in str(caught.value)
            with pytest.raises(CredentialError):
                cipher.rotate(token, name=name)


def test_a_ciphertext_moved_between_tenants_is_refused() -> None:
    cipher = CredentialCipher([NEW])
    token = cipher.encrypt(credential_name("globex", "databricks_token"), "theirs")
    with pytest.raises(CredentialError):
        cipher.decrypt(credential_name("acme", "databricks_token"), token)


def test_every_tampered_byte_is_refused() -> None:
    cipher = CredentialCipher([NEW])
    token = cipher.encrypt_at_time("acme/a", "value", AT)
    raw = bytearray(base64.urlsafe_b64decode(token))
    for i in range(len(raw)):
        changed = bytearray(raw)
        changed[i] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(changed)).decode()
        with pytest.raises(CredentialError):
            cipher.decrypt("acme/a", forged)
    for bad in ("", "not a token", token[:-4], token + "AAAA", "é" + token):
        with pytest.raises(CredentialError):
            cipher.decrypt("acme/a", bad)


def test_a_token_with_a_foreign_payload_is_refused() -> None:
    """A genuine Fernet token under our key but not written by this module (no name binding)."""
    cipher = CredentialCipher([NEW])
    for payload in (b"plain", b'{"name":"acme/a","value":"v"}', b'{"name":"acme/a","v":2,"value":"v"}', b"[1]"):
        token = Fernet(NEW).encrypt(payload).decode()
        with pytest.raises(CredentialError) as caught:
            cipher.decrypt("acme/a", token)
        assert "unknown payload" in str(caught.value)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "empty"),
        (["nope"], "credential key #1 of 1 is not a Fernet key"),
        ([NEW, "x" * 44], "credential key #2 of 2 is not a Fernet key"),
        ([NEW, OLD, NEW[:-1]], "credential key #3 of 3"),
        ([NEW, base64.b64encode(b"\xfb" * 32).decode()], "#2 of 2"),  # standard, not url-safe, base64
        ([NEW, base64.urlsafe_b64encode(b"k" * 16).decode()], "#2 of 2"),  # 16 bytes
        ([NEW, OLD, NEW], "credential keys #1 and #3 of 3 are the same key"),
        (NEW, "as a list"),
    ],
)
def test_bad_key_lists_are_refused_without_showing_a_key(keys: list[str], message: str) -> None:
    with pytest.raises(CredentialError) as caught:
        CredentialCipher(keys)
    text = str(caught.value)
    assert message in text
    assert isinstance(caught.value, CoreError)
    for shown in (*keys, NEW, OLD) if not isinstance(keys, str) else (keys,):
        if len(shown) >= 8:
            assert shown not in text and shown[:8] not in text
    assert caught.value.__cause__ is None


def test_keys_may_carry_surrounding_whitespace() -> None:
    token = CredentialCipher([f" {NEW}\n"]).encrypt("acme/a", "v")
    assert CredentialCipher([NEW]).decrypt("acme/a", token) == "v"


def test_repr_hides_the_keys() -> None:
    cipher = CredentialCipher([NEW, OLD])
    assert repr(cipher) == "CredentialCipher(<2 key(s)>)"
    assert NEW not in repr(cipher) and OLD not in repr(cipher)


@pytest.mark.parametrize("name", ["", "a\nb", "x" * 201, None])
def test_bad_names_are_refused(name: str) -> None:
    cipher = CredentialCipher([NEW])
    with pytest.raises(CredentialError):
        cipher.encrypt(name, "v")
    with pytest.raises(CredentialError):
        cipher.decrypt(name, cipher.encrypt("acme/a", "v"))


def test_errors_never_contain_the_plaintext() -> None:
    secret = "dapi-super-secret-value-0123456789"
    cipher = CredentialCipher([NEW])
    token = cipher.encrypt("acme/a", secret)
    calls: tuple[Callable[[], str], ...] = (
        lambda: cipher.decrypt("acme/b", token),
        lambda: CredentialCipher([OLD]).decrypt("acme/a", token),
        lambda: cipher.decrypt("acme/a", token[:-2]),
    )
    for call in calls:
        with pytest.raises(CredentialError) as caught:
            call()
        assert secret not in str(caught.value) and token not in str(caught.value)


def test_generated_keys_work_and_differ() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert CredentialCipher([first, second]).decrypt("a", CredentialCipher([first]).encrypt("a", "v")) == "v"


def test_parse_key_list() -> None:
    assert parse_key_list(f"{NEW},{OLD}") == [NEW, OLD]
    assert parse_key_list(f" {NEW} ,\n {OLD} ") == [NEW, OLD]
    assert parse_key_list("  ") == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("dapi0123456789abcdef", "****cdef"),
        ("ghp_" + "A" * 32 + "wxyz", "****wxyz"),
        ("0123456789abcdef", "****cdef"),
        ("0123456789abcde", "****"),
        ("abcd", "****"),
        ("", "****"),
    ],
)
def test_redact(value: str, shown: str) -> None:
    assert redact(value) == shown


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(min_size=1, max_size=50).filter(str.isprintable),
    value=st.text(max_size=200),
    seconds=st.integers(0, 2**32),
)
def test_any_value_round_trips_and_rotates(name: str, value: str, seconds: int) -> None:
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    token = CredentialCipher([OLD]).encrypt_at_time(name, value, at)
    both = CredentialCipher([NEW, OLD])
    assert both.decrypt(name, token) == value
    assert CredentialCipher([NEW]).decrypt(name, both.rotate(token, name=name)) == value
