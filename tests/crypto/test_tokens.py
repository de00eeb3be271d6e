"""Tests for crypto.tokens: token text, channel-bound proofs, the registry."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import tokens
from crypto.certs import ClusterCA, base32_lower
from crypto.tokens import (
    TOKEN_PROOF_BYTES,
    TOKENS_MAX,
    BadTokenProofError,
    ParsedToken,
    TokenError,
    TokenExhaustedError,
    TokenExpiredError,
    TokenFormatError,
    TokenRecord,
    TokenRegistry,
    TokenRegistryFullError,
    TokenStoreError,
    UnknownTokenError,
)

PROPERTY = settings(derandomize=True, database=None, deadline=None)
NOW = 1_790_000_000.0
HOUR_S = 3600
H1 = hashlib.sha256(b"session one").digest()
H2 = hashlib.sha256(b"session two").digest()
SECRET = bytes(range(32))


def make_ca(byte: int = 1) -> ClusterCA:
    return ClusterCA.generate(bytes([byte]) * 32)


def new_registry() -> TokenRegistry:
    return TokenRegistry(ca_fingerprint=make_ca().fingerprint)


def create(registry: TokenRegistry, secret: bytes = SECRET, **overrides: object) -> str:
    kwargs: dict[str, object] = {"now": NOW, "ttl_s": HOUR_S, "uses": 1, "roles": ["member"]}
    kwargs.update(overrides)
    text, _ = registry.create(rng_bytes=secret, **kwargs)  # type: ignore[arg-type]
    return text


# --- token text ---------------------------------------------------------------------------


def test_token_text_layout_and_parse_round_trip() -> None:
    ca = make_ca()
    text = create(TokenRegistry(ca_fingerprint=ca.fingerprint))
    prefix, fingerprint, secret = text.split(".")
    assert (prefix, fingerprint, secret) == ("vrm1", ca.fingerprint, base32_lower(SECRET))
    assert len(text) == tokens.TOKEN_TEXT_CHARS == 110
    assert tokens.parse_token(f"  {text}\n") == ParsedToken(ca.fingerprint, SECRET)
    assert tokens.parse_token(text) == (ca.fingerprint, SECRET)


def test_ca_matches_pins_the_ca() -> None:
    ca = make_ca()
    text = create(TokenRegistry(ca_fingerprint=ca.fingerprint))
    assert tokens.ca_matches(text, ca.pubkey)
    assert tokens.ca_matches(tokens.parse_token(text), ca.pubkey)
    assert not tokens.ca_matches(text, make_ca(2).pubkey)


GOOD = tokens.format_token(make_ca().fingerprint, SECRET)
_, FP, SEC = GOOD.split(".")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f"vrm2.{FP}.{SEC}", "must start with 'vrm1'"),
        (f"K10{FP}::{SEC}", "3 dot-separated parts"),
        (f"vrm1.{FP}", "3 dot-separated parts"),
        (f"vrm1.{FP}.{SEC}.x", "3 dot-separated parts"),
        ("", "3 dot-separated parts"),
        (f"vrm1.{FP.upper()}.{SEC}", "fingerprint must be 52"),
        (f"vrm1.{FP[:-1]}.{SEC}", "fingerprint must be 52"),
        (f"vrm1.{FP}1.{SEC}", "fingerprint must be 52"),
        (f"vrm1.{FP}.{SEC[:-1]}8", "secret must be 52"),
        (f"vrm1.{FP}.{SEC}a", "secret must be 52"),
        (f"vrm1.{FP}.{SEC[:-1]}b", "secret must be 52"),  # non-zero unused trailing bits
        (f"vrm1.{FP}.{SEC[:-4]}====", "secret must be 52"),
        (f"vrm1.{FP}.{SEC[:-1]}é", "secret must be 52"),
    ],
)
def test_parse_rejects_malformed_tokens(text: str, match: str) -> None:
    with pytest.raises(TokenFormatError, match=match):
        tokens.parse_token(text)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(TokenFormatError, match="must be text"):
        tokens.parse_token(GOOD.encode())  # type: ignore[arg-type]


def test_format_token_rejects_misuse() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        tokens.format_token(FP, b"\x00" * 31)
    with pytest.raises(ValueError, match="fingerprint"):
        tokens.format_token("abc", SECRET)


# --- proofs -------------------------------------------------------------------------------


def test_proof_is_token_id_then_hmac_keyed_with_the_secret_hash() -> None:
    key = hashlib.sha256(SECRET).digest()
    expected_mac = hmac.new(key, b"vramancer-join-token:" + H1, hashlib.sha256).digest()
    proof = tokens.token_proof(GOOD, H1)
    token_id = hashlib.sha256(b"vramancer-join-token-id:" + key).digest()[:8]
    assert proof == token_id + expected_mac
    assert token_id != key[:8]  # the shown id reveals nothing of the HMAC key
    assert len(proof) == TOKEN_PROOF_BYTES == 40
    assert SECRET not in proof
    assert proof != tokens.token_proof(GOOD, H2)


def test_proof_requires_a_32_byte_handshake_hash() -> None:
    with pytest.raises(ValueError, match="handshake hash must be 32 bytes"):
        tokens.token_proof(GOOD, H1[:31])


# --- registry -----------------------------------------------------------------------------


def test_create_stores_only_the_hash() -> None:
    registry = new_registry()
    text, record = registry.create(now=NOW, ttl_s=HOUR_S, uses=3, roles=["member", "admin"])
    secret = tokens.parse_token(text).secret
    assert record.secret_hash == hashlib.sha256(secret).digest()
    key = hashlib.sha256(secret).digest()
    assert record.token_id == hashlib.sha256(b"vramancer-join-token-id:" + key).digest()[:8].hex()
    assert (record.created_at, record.expires_at) == (int(NOW), int(NOW) + HOUR_S)
    assert (record.uses_left, record.roles) == (3, ("admin", "member"))
    assert registry.get(record.token_id) == record
    exported = json.dumps(registry.export())
    assert base32_lower(secret) not in exported and secret.hex() not in exported
    assert record.secret_hash.hex() not in repr(record)


def test_create_draws_fresh_secrets_by_default() -> None:
    registry = new_registry()
    first, _ = registry.create(now=NOW, uses=1, roles=["member"])
    second, _ = registry.create(now=NOW, uses=1, roles=["member"])
    assert first != second
    assert len(registry) == 2


def test_create_rejects_misuse() -> None:
    registry = new_registry()
    for ttl_s in (0, tokens.TOKEN_TTL_S_MAX + 1, 1.5):
        with pytest.raises(ValueError, match="ttl_s"):
            create(registry, ttl_s=ttl_s)
    for uses in (0, tokens.TOKEN_USES_MAX + 1, True):
        with pytest.raises(ValueError, match="uses"):
            create(registry, uses=uses)
    with pytest.raises(ValueError, match="unknown roles"):
        create(registry, roles=["root"])
    create(registry)
    with pytest.raises(ValueError, match="random source repeats"):
        create(registry)
    with pytest.raises(ValueError, match="fingerprint"):
        TokenRegistry(ca_fingerprint="nope")


def test_redeem_spends_uses_until_exhausted() -> None:
    registry = new_registry()
    text = create(registry, uses=2)
    first = registry.redeem(tokens.token_proof(text, H1), H1, NOW + 1)
    assert first.uses_left == 1
    assert first.roles == ("member",)
    assert registry.redeem(tokens.token_proof(text, H2), H2, NOW + 2).uses_left == 0
    with pytest.raises(TokenExhaustedError, match="no uses left"):
        registry.redeem(tokens.token_proof(text, H1), H1, NOW + 3)


def test_a_refund_gives_back_the_use_of_an_admission_that_did_not_happen() -> None:
    registry = new_registry()
    text = create(registry, uses=1)
    spent = registry.redeem(tokens.token_proof(text, H1), H1, NOW + 1)
    assert spent.uses_left == 0
    refunded = registry.refund(spent.token_id)
    assert refunded is not None and refunded.uses_left == 1
    assert registry.redeem(tokens.token_proof(text, H2), H2, NOW + 2).uses_left == 0
    registry.revoke(spent.token_id)
    assert registry.refund(spent.token_id) is None  # gone meanwhile: nothing to give back


def test_redeem_refuses_an_expired_token() -> None:
    registry = new_registry()
    text = create(registry)
    registry_copy = TokenRegistry.from_export(registry.export())
    registry_copy.redeem(tokens.token_proof(text, H1), H1, NOW + HOUR_S - 0.5)
    with pytest.raises(TokenExpiredError, match="expired at 2026-09-21T15:13:20Z"):
        registry.redeem(tokens.token_proof(text, H1), H1, NOW + HOUR_S)


def test_redeem_refuses_unknown_tokens() -> None:
    registry = new_registry()
    create(registry)
    stranger = tokens.format_token(FP, b"\x09" * 32)
    with pytest.raises(UnknownTokenError, match="no token"):
        registry.redeem(tokens.token_proof(stranger, H1), H1, NOW)


def test_redeem_is_channel_bound() -> None:
    registry = new_registry()
    text = create(registry, uses=5)
    proof_for_session_one = tokens.token_proof(text, H1)
    with pytest.raises(BadTokenProofError, match="this handshake"):
        registry.redeem(proof_for_session_one, H2, NOW)
    assert registry.records()[0].uses_left == 5  # a failed attempt spends nothing


def test_redeem_checks_the_mac_before_revealing_token_state() -> None:
    registry = new_registry()
    text = create(registry, uses=1)
    forged = tokens.token_proof(text, H1)[:8] + b"\x00" * 32
    with pytest.raises(BadTokenProofError):
        registry.redeem(forged, H1, NOW + 10 * HOUR_S)  # expired, but that is not revealed
    registry.redeem(tokens.token_proof(text, H1), H1, NOW)
    with pytest.raises(BadTokenProofError):
        registry.redeem(forged, H1, NOW)  # exhausted, but that is not revealed


@pytest.mark.parametrize("proof", [b"", b"\x00" * 39, b"\x00" * 41, "x" * 40])
def test_redeem_rejects_malformed_proofs(proof: bytes) -> None:
    with pytest.raises(TokenFormatError, match="40 bytes"):
        new_registry().redeem(proof, H1, NOW)


def test_revoke_and_prune() -> None:
    registry = new_registry()
    revoked = create(registry, secret=b"\x01" * 32)
    create(registry, secret=b"\x02" * 32, ttl_s=10)
    used = create(registry, secret=b"\x03" * 32)
    live = create(registry, secret=b"\x04" * 32)
    token_id = tokens.token_proof(revoked, H1)[:8].hex()
    assert registry.revoke(token_id).token_id == token_id
    with pytest.raises(UnknownTokenError, match="to revoke"):
        registry.revoke(token_id)
    with pytest.raises(UnknownTokenError):
        registry.redeem(tokens.token_proof(revoked, H1), H1, NOW)
    registry.redeem(tokens.token_proof(used, H1), H1, NOW)
    pruned = registry.prune(NOW + 10)
    assert len(pruned) == 2
    assert [r.token_id for r in registry.records()] == [tokens.token_proof(live, H1)[:8].hex()]


def test_registry_is_bounded() -> None:
    registry = new_registry()
    for i in range(TOKENS_MAX):
        create(registry, secret=i.to_bytes(32, "big"), ttl_s=10 if i == 0 else HOUR_S)
    with pytest.raises(TokenRegistryFullError, match="1024 live tokens"):
        create(registry, secret=b"\xff" * 32)
    # Once a token has expired, create makes room by pruning.
    create(registry, secret=b"\xff" * 32, now=NOW + 10)
    assert len(registry) == TOKENS_MAX


def test_export_import_round_trip_through_json() -> None:
    registry = new_registry()
    text = create(registry, uses=2, roles=["admin"])
    create(registry, secret=b"\x07" * 32)
    registry.redeem(tokens.token_proof(text, H1), H1, NOW)
    restored = TokenRegistry.from_export(json.loads(json.dumps(registry.export())))
    assert restored.records() == registry.records()
    assert restored.ca_fingerprint == registry.ca_fingerprint
    assert restored.redeem(tokens.token_proof(text, H2), H2, NOW).uses_left == 0


def _export() -> dict[str, object]:
    registry = new_registry()
    create(registry)
    return registry.export()


def _with_token(**changes: object) -> dict[str, object]:
    data = _export()
    record = dict(data["tokens"][0])  # type: ignore[index]
    record.update(changes)
    return {**data, "tokens": [record]}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "must be a map"),
        ({**_export(), "extra": 1}, "must be a map"),
        ({**_export(), "version": 2}, "version 2 unsupported"),
        ({**_export(), "version": True}, "version True unsupported"),
        ({**_export(), "tokens": {}}, "must be a list"),
        ({**_export(), "ca_fingerprint": "x"}, "inconsistent"),
        ({**_export(), "tokens": _export()["tokens"] * 2}, "duplicate token id"),  # type: ignore[operator]
        ({**_export(), "tokens": [None]}, "token record must be a map"),
        (_with_token(secret_hash="zz"), "not hex"),
        (_with_token(secret_hash=b"\x00" * 32), "must be hex text"),
        (_with_token(secret_hash="00" * 32), "does not match its secret hash"),
        (_with_token(roles="member"), "roles a list"),
        (_with_token(roles=["member", "root"]), "unknown roles"),
        (_with_token(uses_left=-1), "uses_left is -1"),
        (_with_token(created_at=1.5), "created_at must be an integer"),
        (_with_token(expires_at=0), "expires before it is created"),
    ],
)
def test_from_export_rejects_malformed_data(data: object, match: str) -> None:
    with pytest.raises(TokenStoreError, match=match):
        TokenRegistry.from_export(data)


def test_error_tree() -> None:
    for error in (
        TokenFormatError,
        UnknownTokenError,
        BadTokenProofError,
        TokenExpiredError,
        TokenExhaustedError,
        TokenRegistryFullError,
        TokenStoreError,
    ):
        assert issubclass(error, TokenError)


# --- properties ---------------------------------------------------------------------------


@PROPERTY
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_property_format_parse_round_trip(ca_key: bytes, secret: bytes) -> None:
    fingerprint = base32_lower(hashlib.sha256(ca_key).digest())
    parsed = tokens.parse_token(tokens.format_token(fingerprint, secret))
    assert parsed == ParsedToken(fingerprint, secret)
    assert tokens.ca_matches(parsed, ca_key)


@PROPERTY
@given(st.text(max_size=130) | st.from_regex(r"vrm1\.[a-z2-7]{52}\.[a-z2-7]{52}", fullmatch=True))
def test_property_parse_raises_only_format_errors(text: str) -> None:
    try:
        parsed = tokens.parse_token(text)
    except TokenFormatError:
        return
    assert tokens.format_token(*parsed) == text.strip()


@PROPERTY
@given(st.binary(max_size=64), st.binary(min_size=32, max_size=32))
def test_property_random_proofs_are_refused(proof: bytes, handshake_hash: bytes) -> None:
    registry = new_registry()
    create(registry)
    with pytest.raises((TokenFormatError, UnknownTokenError, BadTokenProofError)):
        registry.redeem(proof, handshake_hash, NOW)


def make_record(
    secret_hash: bytes, created_at: int, lifetime_s: int, uses_left: int, roles: list[str]
) -> TokenRecord:
    return TokenRecord(
        token_id=tokens.token_id_of(secret_hash),
        secret_hash=secret_hash,
        created_at=created_at,
        expires_at=created_at + lifetime_s,
        uses_left=uses_left,
        roles=tuple(roles),
    )


records = st.builds(
    make_record,
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**40),
    st.integers(1, 2**40),
    st.integers(0, tokens.TOKEN_USES_MAX),
    st.lists(st.sampled_from(["admin", "operator", "member"]), min_size=1, unique=True),
)


@PROPERTY
@given(st.lists(records, max_size=5, unique_by=lambda r: r.token_id))
def test_property_registry_export_round_trip(generated: list[TokenRecord]) -> None:
    registry = TokenRegistry(ca_fingerprint=FP, records=generated)
    restored = TokenRegistry.from_export(json.loads(json.dumps(registry.export())))
    assert restored.records() == registry.records()
    assert {r.token_id: r for r in restored.records()} == {r.token_id: r for r in generated}
