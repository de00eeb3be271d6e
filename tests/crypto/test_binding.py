"""Tests for crypto.binding: identity payloads, handshake signatures, admission messages."""

from __future__ import annotations

import ast
import contextlib
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import binding, certs, tokens
from crypto.binding import (
    AdmissionGrant,
    AdmissionMessageType,
    Auth,
    BindingError,
    BindingFormatError,
    BindingSignatureError,
    HandshakeSignatureError,
    IdentityPayload,
    JoinRequest,
    Refusal,
    RefusalReason,
    StaticKeySignatureError,
    Welcome,
)

PROPERTY = settings(derandomize=True, database=None, deadline=None)
NOW = 1_790_000_000.0
H1 = hashlib.sha256(b"session one").digest()
H2 = hashlib.sha256(b"session two").digest()
NOISE_STATIC = b"\x11" * 32
OTHER_STATIC = b"\x12" * 32
CA = certs.ClusterCA.generate(b"\x01" * 32)
ID_KEY = nacl.signing.SigningKey(b"\x02" * 32)
CERT = certs.issue(
    CA,
    node_pubkey=bytes(ID_KEY.verify_key),
    node_name="gpu-box",
    roles=["member"],
    serial=1,
    now=NOW,
    ttl_s=3600,
).encode()


def payload(certificate: bytes | None = CERT, key: nacl.signing.SigningKey = ID_KEY) -> bytes:
    return binding.encode_identity_payload(
        key,
        noise_static_pub=NOISE_STATIC,
        certificate=certificate,
        software_version="0.1.0",
        protocol_version=1,
    )


def payload_fields(**overrides: object) -> dict[str, object]:
    fields = dict(msgpack.unpackb(payload(), raw=False))
    fields.update(overrides)
    return fields


def pack_sorted(fields: Mapping[Any, object]) -> bytes:
    return bytes(msgpack.packb(dict(sorted(fields.items())), use_bin_type=True))


# --- identity payload ---------------------------------------------------------------------


@pytest.mark.parametrize("certificate", [CERT, None])
def test_identity_payload_round_trip(certificate: bytes | None) -> None:
    result = binding.verify_identity_payload(payload(certificate), NOISE_STATIC)
    assert result.identity_pubkey == bytes(ID_KEY.verify_key)
    assert result.certificate == certificate
    assert (result.version, result.software_version, result.protocol_version) == (1, "0.1.0", 1)
    assert IdentityPayload.decode(result.encode()) == result


def test_identity_payload_keys_are_sorted_and_complete() -> None:
    keys = [key for key, _ in msgpack.unpackb(payload(None), object_pairs_hook=list)]
    assert keys == sorted(keys)
    assert set(keys) == {
        "version",
        "identity_pubkey",
        "certificate",
        "static_sig",
        "software_version",
        "protocol_version",
    }


def test_payload_binds_the_noise_static_key() -> None:
    with pytest.raises(StaticKeySignatureError, match="did not sign the Noise static key"):
        binding.verify_identity_payload(payload(), OTHER_STATIC)


def test_payload_claiming_someone_elses_identity_is_refused() -> None:
    victim = bytes(nacl.signing.SigningKey(b"\x03" * 32).verify_key)
    forged = pack_sorted(payload_fields(identity_pubkey=victim))
    with pytest.raises(StaticKeySignatureError):
        binding.verify_identity_payload(forged, NOISE_STATIC)


def test_static_signature_is_domain_separated() -> None:
    handshake_style = ID_KEY.sign(b"vramancer-noise-handshake:" + NOISE_STATIC).signature
    forged = pack_sorted(payload_fields(static_sig=handshake_style))
    with pytest.raises(StaticKeySignatureError):
        binding.verify_identity_payload(forged, NOISE_STATIC)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00" * (binding.IDENTITY_PAYLOAD_BYTES_MAX + 1), "over the 8192-byte limit"),
        (b"", "not valid msgpack"),
        (b"\x90", "must be a msgpack map"),
        (pack_sorted(payload_fields(version=2)), "version 2 unsupported"),
        (pack_sorted(payload_fields(extra=b"")), "unknown fields 'extra'"),
        (
            pack_sorted({k: v for k, v in payload_fields().items() if k != "static_sig"}),
            "lacks fields static_sig",
        ),
        (pack_sorted(payload_fields(identity_pubkey=b"\x00" * 33)), "must be 32 bytes"),
        (pack_sorted(payload_fields(static_sig=b"\x00" * 63)), "must be 64 bytes"),
        (pack_sorted(payload_fields(certificate=b"\xc1")), "certificate: .*not valid msgpack"),
        (pack_sorted(payload_fields(certificate="cert")), "certificate must be bytes"),
        (pack_sorted(payload_fields(software_version="")), "software_version has 0"),
        (pack_sorted(payload_fields(software_version="v\x00")), "non-printable"),
        (pack_sorted(payload_fields(protocol_version=2**16)), "protocol_version is 65536"),
        (pack_sorted(payload_fields(protocol_version=1.0)), "protocol_version must be an integer"),
        (
            bytes(msgpack.packb(dict(reversed(payload_fields().items())), use_bin_type=True)),
            "not canonically encoded",
        ),
    ],
)
def test_malformed_payloads_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(BindingFormatError, match=match):
        binding.verify_identity_payload(data, NOISE_STATIC)


def test_encode_identity_payload_rejects_misuse() -> None:
    with pytest.raises(ValueError, match="noise_static_pub must be 32 bytes"):
        binding.encode_identity_payload(
            ID_KEY,
            noise_static_pub=b"\x00",
            certificate=None,
            software_version="0.1.0",
            protocol_version=1,
        )
    with pytest.raises(ValueError, match="remote_noise_static must be 32 bytes"):
        binding.verify_identity_payload(payload(), b"\x00")


# --- handshake-hash challenge-response ----------------------------------------------------


def test_handshake_signature_round_trip() -> None:
    signature = binding.sign_handshake_hash(ID_KEY, H1)
    assert len(signature) == 64
    binding.verify_handshake_signature(bytes(ID_KEY.verify_key), H1, signature)


def test_handshake_signature_does_not_replay_into_another_session() -> None:
    signature = binding.sign_handshake_hash(ID_KEY, H1)
    with pytest.raises(HandshakeSignatureError, match="did not sign this session"):
        binding.verify_handshake_signature(bytes(ID_KEY.verify_key), H2, signature)


def test_handshake_signature_by_another_key_is_refused() -> None:
    signature = binding.sign_handshake_hash(nacl.signing.SigningKey(b"\x03" * 32), H1)
    with pytest.raises(HandshakeSignatureError):
        binding.verify_handshake_signature(bytes(ID_KEY.verify_key), H1, signature)


def test_static_key_signature_does_not_pass_as_handshake_signature() -> None:
    static_style = ID_KEY.sign(b"vramancer-noise-static-key:" + H1).signature
    with pytest.raises(HandshakeSignatureError):
        binding.verify_handshake_signature(bytes(ID_KEY.verify_key), H1, static_style)


@pytest.mark.parametrize("signature", [b"", b"\x00" * 63, b"\x00" * 65, "sig"])
def test_malformed_handshake_signature_is_refused(signature: bytes) -> None:
    with pytest.raises(HandshakeSignatureError, match="must be"):
        binding.verify_handshake_signature(bytes(ID_KEY.verify_key), H1, signature)


def test_handshake_helpers_reject_misuse() -> None:
    with pytest.raises(ValueError, match="handshake_hash must be 32 bytes"):
        binding.sign_handshake_hash(ID_KEY, H1[:16])
    with pytest.raises(ValueError, match="identity_pubkey must be 32 bytes"):
        binding.verify_handshake_signature(b"\x00", H1, b"\x00" * 64)


# --- admission messages -------------------------------------------------------------------

PROOF = b"\x05" * tokens.TOKEN_PROOF_BYTES
GRANT = AdmissionGrant(certificate=CERT, ca_pubkey=CA.pubkey, gossip_key=b"\x06" * 32)


@pytest.mark.parametrize(
    "message",
    [
        JoinRequest(token_proof=PROOF, node_name="jetson-1"),
        GRANT,
        Refusal(reason_code=RefusalReason.TOKEN_EXPIRED, message="token expired at …"),
        Refusal(reason_code=RefusalReason.MALFORMED, message=""),
    ],
)
def test_admission_messages_round_trip(message: binding.AdmissionMessage) -> None:
    assert binding.decode_admission_message(message.encode()) == message


def test_admission_message_wire_shape() -> None:
    decoded = msgpack.unpackb(JoinRequest(token_proof=PROOF, node_name="n").encode(), raw=False)
    assert decoded == {"node_name": "n", "token_proof": PROOF, "type": 1}
    refusal = Refusal(reason_code=7, message="x")  # type: ignore[arg-type]
    assert refusal.reason_code is RefusalReason.TOKEN_EXPIRED
    assert msgpack.unpackb(refusal.encode(), raw=False) == {
        "message": "x",
        "reason_code": 7,
        "type": 3,
    }


def test_grant_repr_hides_the_gossip_key() -> None:
    assert (b"\x06" * 32).hex() not in repr(GRANT)
    assert repr(b"\x06" * 32) not in repr(GRANT)


def test_wire_enums_are_append_only() -> None:
    assert [(m.name, m.value) for m in RefusalReason] == [
        ("UNKNOWN_CLUSTER", 1),
        ("CERTIFICATE_EXPIRED", 2),
        ("CERTIFICATE_REVOKED", 3),
        ("BAD_SIGNATURE", 4),
        ("VERSION_MISMATCH", 5),
        ("BAD_TOKEN", 6),
        ("TOKEN_EXPIRED", 7),
        ("TOKEN_EXHAUSTED", 8),
        ("NOT_ADMITTED", 9),
        ("MALFORMED", 10),
        ("NOT_ADMIN", 11),
    ]
    assert [(m.name, m.value) for m in AdmissionMessageType] == [
        ("JOIN_REQUEST", 1),
        ("ADMISSION_GRANT", 2),
        ("REFUSAL", 3),
        ("AUTH", 4),
        ("WELCOME", 5),
    ]


def join_fields(**overrides: object) -> dict[object, object]:
    fields: dict[object, object] = {"type": 1, "token_proof": PROOF, "node_name": "n"}
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00" * (binding.ADMISSION_MESSAGE_BYTES_MAX + 1), "over the 8192-byte limit"),
        (b"\xa3abc", "must be a msgpack map"),
        (pack_sorted({"token_proof": PROOF, "node_name": "n"}), "type None is unknown"),
        (pack_sorted(join_fields(type=99)), "type 99 is unknown"),
        (pack_sorted(join_fields(type=True)), "type True is unknown"),
        (pack_sorted(join_fields(type="1")), "type '1' is unknown"),
        (pack_sorted(join_fields(token_proof=PROOF[:-1])), "token_proof must be 40 bytes"),
        (pack_sorted(join_fields(node_name="")), "node_name has 0 characters"),
        (pack_sorted(join_fields(gossip_key=b"")), "unknown fields 'gossip_key'"),
        (pack_sorted(join_fields(type=2)), "unknown fields 'node_name', 'token_proof'"),
        (pack_sorted({"type": 3, "reason_code": 0, "message": ""}), "reason_code is 0"),
        (pack_sorted({"type": 3, "reason_code": 99, "message": ""}), "reason_code is 99"),
        (pack_sorted({"type": 3, "reason_code": 1, "message": "m" * 257}), "257 characters"),
        (
            pack_sorted(
                {"type": 2, "certificate": b"\xc1", "ca_pubkey": CA.pubkey, "gossip_key": b""}
            ),
            "grant certificate: .*not valid msgpack",
        ),
        (
            pack_sorted(
                {"type": 2, "certificate": CERT, "ca_pubkey": CA.pubkey, "gossip_key": b"\x00"}
            ),
            "gossip_key must be 32 bytes",
        ),
        (bytes(msgpack.packb(join_fields(), use_bin_type=True)), "not canonically encoded"),
    ],
)
def test_malformed_admission_messages_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(BindingFormatError, match=match):
        binding.decode_admission_message(data)


# --- refusal reasons ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (certs.UnknownClusterError(), RefusalReason.UNKNOWN_CLUSTER),
        (certs.CertificateExpiredError(), RefusalReason.CERTIFICATE_EXPIRED),
        (certs.CertificateRevokedError(), RefusalReason.CERTIFICATE_REVOKED),
        (certs.BadSignatureError(), RefusalReason.BAD_SIGNATURE),
        (StaticKeySignatureError(), RefusalReason.BAD_SIGNATURE),
        (HandshakeSignatureError(), RefusalReason.BAD_SIGNATURE),
        (certs.CertificateFormatError(), RefusalReason.MALFORMED),
        (BindingFormatError(), RefusalReason.MALFORMED),
        (tokens.TokenFormatError(), RefusalReason.BAD_TOKEN),
        (tokens.UnknownTokenError(), RefusalReason.BAD_TOKEN),
        (tokens.BadTokenProofError(), RefusalReason.BAD_TOKEN),
        (tokens.TokenExpiredError(), RefusalReason.TOKEN_EXPIRED),
        (tokens.TokenExhaustedError(), RefusalReason.TOKEN_EXHAUSTED),
    ],
)
def test_refusal_reason_for_errors(error: Exception, reason: RefusalReason) -> None:
    assert binding.refusal_reason_for(error) is reason


def test_refusal_reason_for_unmapped_error() -> None:
    with pytest.raises(ValueError, match="no refusal reason for KeyError"):
        binding.refusal_reason_for(KeyError("x"))


def test_error_tree() -> None:
    assert issubclass(BindingFormatError, BindingError)
    assert issubclass(StaticKeySignatureError, BindingSignatureError)
    assert issubclass(HandshakeSignatureError, BindingSignatureError)
    assert issubclass(BindingSignatureError, BindingError)


# --- the whole admission, both sides ------------------------------------------------------


def test_admission_flow_end_to_end() -> None:
    registry = tokens.TokenRegistry(ca_fingerprint=CA.fingerprint)
    token_text, _ = registry.create(now=NOW, uses=1, roles=["member"], rng_bytes=b"\x08" * 32)
    joiner = nacl.signing.SigningKey(b"\x09" * 32)
    # The joiner checks the responder's CA before sending anything.
    assert tokens.ca_matches(token_text, CA.pubkey)
    hello = binding.encode_identity_payload(
        joiner,
        noise_static_pub=OTHER_STATIC,
        certificate=None,
        software_version="0.1.0",
        protocol_version=1,
    )
    request = JoinRequest(token_proof=tokens.token_proof(token_text, H1), node_name="pi-4")
    # The admin's side.
    identity = binding.verify_identity_payload(hello, OTHER_STATIC)
    binding.verify_handshake_signature(
        identity.identity_pubkey, H1, binding.sign_handshake_hash(joiner, H1)
    )
    received = binding.decode_admission_message(request.encode())
    assert isinstance(received, JoinRequest)
    record = registry.redeem(received.token_proof, H1, NOW + 1)
    signed = certs.issue(
        CA,
        node_pubkey=identity.identity_pubkey,
        node_name=received.node_name,
        roles=record.roles,
        serial=2,
        now=NOW + 1,
        ttl_s=3600,
    )
    grant = AdmissionGrant(
        certificate=signed.encode(), ca_pubkey=CA.pubkey, gossip_key=b"\x07" * 32
    )
    # The joiner's side.
    answer = binding.decode_admission_message(grant.encode())
    assert isinstance(answer, AdmissionGrant)
    assert tokens.ca_matches(token_text, answer.ca_pubkey)
    cert = certs.verify(
        certs.SignedCertificate.decode(answer.certificate),
        answer.ca_pubkey,
        now=NOW + 2,
        revoked_serials=(),
    )
    assert (cert.node_pubkey, cert.roles) == (bytes(joiner.verify_key), ("member",))
    # The same proof relayed into another session, or replayed, is refused.
    with pytest.raises(tokens.TokenError) as refused:
        registry.redeem(received.token_proof, H2, NOW + 3)
    assert binding.refusal_reason_for(refused.value) is RefusalReason.BAD_TOKEN
    with pytest.raises(tokens.TokenExhaustedError):
        registry.redeem(received.token_proof, H1, NOW + 3)


# --- purity -------------------------------------------------------------------------------

FORBIDDEN_IMPORTS = {
    "time",
    "random",
    "socket",
    "trio",
    "lmdb",
    "torch",
    "prometheus_client",
    "vramancer_node",
    "cli",
}


@pytest.mark.parametrize("module", ["certs", "tokens", "binding"])
def test_module_is_pure(module: str) -> None:
    source = Path(__file__).parents[2] / "crypto" / f"{module}.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN_IMPORTS


# --- properties ---------------------------------------------------------------------------

payloads = st.builds(
    IdentityPayload,
    identity_pubkey=st.binary(min_size=32, max_size=32),
    certificate=st.none() | st.just(CERT),
    static_sig=st.binary(min_size=64, max_size=64),
    software_version=st.text(
        st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=64
    ),
    protocol_version=st.integers(0, binding.PROTOCOL_VERSION_MAX),
)
messages = st.one_of(
    st.builds(
        JoinRequest,
        token_proof=st.binary(min_size=40, max_size=40),
        node_name=st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=64),
    ),
    st.builds(
        AdmissionGrant,
        certificate=st.just(CERT),
        ca_pubkey=st.binary(min_size=32, max_size=32),
        gossip_key=st.binary(min_size=32, max_size=32),
    ),
    st.builds(
        Refusal,
        reason_code=st.sampled_from(RefusalReason),
        message=st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=256),
    ),
)


@PROPERTY
@given(payloads)
def test_property_identity_payload_round_trip(value: IdentityPayload) -> None:
    assert IdentityPayload.decode(value.encode()) == value


@PROPERTY
@given(messages)
def test_property_admission_message_round_trip(message: binding.AdmissionMessage) -> None:
    assert binding.decode_admission_message(message.encode()) == message


@PROPERTY
@given(st.binary(max_size=400))
def test_property_random_bytes_raise_only_format_errors(data: bytes) -> None:
    for decode in (IdentityPayload.decode, binding.decode_admission_message):
        with contextlib.suppress(BindingFormatError):
            decode(data)
    with contextlib.suppress(BindingFormatError, StaticKeySignatureError):
        binding.verify_identity_payload(data, NOISE_STATIC)


@PROPERTY
@given(st.data())
def test_property_a_changed_byte_never_yields_the_same_payload(data: st.DataObject) -> None:
    # Canonical encoding: one payload, one byte string.  The static signature covers only
    # the Noise static key; Noise's AEAD protects the rest of the payload in transit.
    original = binding.verify_identity_payload(payload(), NOISE_STATIC)
    encoded = bytearray(payload())
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(1, 255))
    try:
        changed = binding.verify_identity_payload(bytes(encoded), NOISE_STATIC)
    except BindingError:
        return
    assert changed != original


def test_auth_and_welcome_round_trip_strictly() -> None:
    auth = Auth(signature=b"\x01" * 64)
    welcome = Welcome(node_name="founder")
    assert binding.decode_admission_message(auth.encode()) == auth
    assert binding.decode_admission_message(welcome.encode()) == welcome
    with pytest.raises(BindingFormatError, match="64"):
        Auth(signature=b"\x01" * 63)
    with pytest.raises(BindingFormatError):
        binding.decode_admission_message(auth.encode()[:-1])
