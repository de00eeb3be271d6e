"""Tests for crypto.certs: CA names, certificate codec, issue/verify, sealed CA key."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import replace

import msgpack
import nacl.public
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import certs
from crypto.certs import (
    CERT_BYTES_MAX,
    CERT_CLOCK_SKEW_S,
    ROLES,
    BadSignatureError,
    CAKeyError,
    CertificateError,
    CertificateExpiredError,
    CertificateFormatError,
    CertificateRevokedError,
    ClusterCA,
    MembershipCertificate,
    SignedCertificate,
    UnknownClusterError,
)

PROPERTY = settings(
    derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
NOW = 1_790_000_000.5  # 2026-09-21T14:13:20Z
DAY_S = 86_400


def make_ca(byte: int = 1) -> ClusterCA:
    return ClusterCA.generate(bytes([byte]) * 32)


def node_key(byte: int = 2) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes([byte]) * 32)


def issue_default(ca: ClusterCA, **overrides: object) -> SignedCertificate:
    kwargs: dict[str, object] = {
        "node_pubkey": bytes(node_key().verify_key),
        "node_name": "gpu-box",
        "roles": ("member",),
        "serial": 7,
        "now": NOW,
        "ttl_s": DAY_S,
    }
    kwargs.update(overrides)
    return certs.issue(ca, **kwargs)  # type: ignore[arg-type]


def cert_fields(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "version": 1,
        "cluster_id": make_ca().cluster_id,
        "node_pubkey": b"\x02" * 32,
        "node_name": "gpu-box",
        "roles": ["member"],
        "serial": 7,
        "not_before": 1000,
        "not_after": 2000,
    }
    fields.update(overrides)
    return fields


def pack_sorted(fields: dict[str, object]) -> bytes:
    return bytes(msgpack.packb(dict(sorted(fields.items())), use_bin_type=True))


# --- names derived from the CA key --------------------------------------------------------


def test_cluster_id_and_fingerprint_follow_their_definitions() -> None:
    ca = make_ca()
    digest = hashlib.blake2b(ca.pubkey, digest_size=64).digest()[:16]
    assert ca.cluster_id == base64.b32encode(digest).decode().rstrip("=").lower()
    sha = hashlib.sha256(ca.pubkey).digest()
    assert ca.fingerprint == base64.b32encode(sha).decode().rstrip("=").lower()
    assert len(ca.cluster_id) == certs.CLUSTER_ID_CHARS == 26
    assert len(ca.fingerprint) == certs.FINGERPRINT_CHARS == 52


def test_generate_is_deterministic_with_injected_randomness() -> None:
    assert make_ca(5).pubkey == make_ca(5).pubkey
    assert ClusterCA.generate(lambda n: b"\x05" * n).pubkey == make_ca(5).pubkey
    assert make_ca(5).pubkey != make_ca(6).pubkey
    assert ClusterCA.generate().pubkey != ClusterCA.generate().pubkey


def test_generate_rejects_wrong_amount_of_randomness() -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        ClusterCA.generate(b"\x01" * 31)
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        ClusterCA.generate(lambda n: b"\x01" * (n + 1))


def test_ca_repr_hides_the_private_key() -> None:
    ca = make_ca()
    assert bytes(ca.signing_key).hex() not in repr(ca)
    assert repr(ca) == "ClusterCA()"


# --- certificate codec --------------------------------------------------------------------


def test_encoding_is_a_sorted_map_with_sorted_roles() -> None:
    cert = MembershipCertificate(**cert_fields(roles=("member", "admin")))  # type: ignore[arg-type]
    pairs = msgpack.unpackb(cert.encode(), object_pairs_hook=list)
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys)
    assert set(keys) == {
        "version",
        "cluster_id",
        "node_pubkey",
        "node_name",
        "roles",
        "serial",
        "not_before",
        "not_after",
    }
    assert dict(pairs)["roles"] == ["admin", "member"]
    assert cert.roles == ("admin", "member")
    assert cert.encode() == pack_sorted(cert_fields(roles=["admin", "member"]))


def test_decode_round_trip() -> None:
    cert = MembershipCertificate.decode(pack_sorted(cert_fields()))
    assert cert.serial == 7
    assert cert.roles == ("member",)
    assert MembershipCertificate.decode(cert.encode()) == cert


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00" * (CERT_BYTES_MAX + 1), "over the 4096-byte limit"),
        (b"\xc1", "not valid msgpack"),
        (pack_sorted(cert_fields()) + b"\x00", "not valid msgpack"),
        (b"\x93\x01\x02\x03", "must be a msgpack map"),
        (
            pack_sorted({k: v for k, v in cert_fields().items() if k != "serial"}),
            "lacks fields serial",
        ),
        (pack_sorted(cert_fields(extra=1)), "unknown fields 'extra'"),
        (b"\x81\x01\x02", "not valid msgpack"),
        (pack_sorted(cert_fields(serial="7")), "serial must be an integer"),
        (pack_sorted(cert_fields(serial=True)), "serial must be an integer"),
        (pack_sorted(cert_fields(serial=-1)), "serial is -1"),
        (pack_sorted(cert_fields(version=2)), "version 2 unsupported"),
        (pack_sorted(cert_fields(cluster_id="X" * 26)), "cluster_id must be 26 base32"),
        (pack_sorted(cert_fields(node_pubkey=b"\x02" * 31)), "node_pubkey must be 32 bytes"),
        (pack_sorted(cert_fields(node_pubkey="aa")), "node_pubkey must be bytes"),
        (pack_sorted(cert_fields(node_name="")), "node_name has 0 characters"),
        (pack_sorted(cert_fields(node_name="n" * 65)), "node_name has 65 characters"),
        (pack_sorted(cert_fields(node_name="a\nb")), "non-printable"),
        (pack_sorted(cert_fields(roles=[])), "non-empty"),
        (pack_sorted(cert_fields(roles=["member", "member"])), "without duplicates"),
        (pack_sorted(cert_fields(roles=["root"])), "unknown roles"),
        (pack_sorted(cert_fields(roles="member")), "tuple of strings"),
        (pack_sorted(cert_fields(roles=[1])), "tuple of strings"),
        (pack_sorted(cert_fields(not_before=2000)), "not_before >= not_after"),
        (pack_sorted(cert_fields(not_after=certs.TIMESTAMP_S_MAX + 1)), "not_after is"),
    ],
)
def test_decode_rejects_malformed_certificates(data: bytes, match: str) -> None:
    with pytest.raises(CertificateFormatError, match=match):
        MembershipCertificate.decode(data)


@pytest.mark.parametrize(
    "data",
    [
        # keys in insertion order, not sorted
        bytes(msgpack.packb(cert_fields(), use_bin_type=True)),
        # roles not sorted
        pack_sorted(cert_fields(roles=["member", "admin"])),
        # serial 7 as a uint32 instead of a positive fixint
        pack_sorted(cert_fields()).replace(b"\xa6serial\x07", b"\xa6serial\xce\x00\x00\x00\x07"),
        # node_name as str8 instead of fixstr
        pack_sorted(cert_fields()).replace(b"\xa7gpu-box", b"\xd9\x07gpu-box"),
    ],
)
def test_decode_rejects_non_canonical_encodings(data: bytes) -> None:
    MembershipCertificate.decode(msgpack_canonical_twin(data))  # the same content decodes
    with pytest.raises(CertificateFormatError, match="not canonically encoded"):
        MembershipCertificate.decode(data)


def msgpack_canonical_twin(data: bytes) -> bytes:
    """The canonical encoding of the same content."""
    obj = msgpack.unpackb(data, raw=False)
    obj["roles"] = sorted(obj["roles"])
    return pack_sorted(obj)


def test_signed_certificate_codec() -> None:
    signed = issue_default(make_ca())
    assert SignedCertificate.decode(signed.encode()) == signed
    with pytest.raises(CertificateFormatError, match="signature must be 64 bytes"):
        SignedCertificate(cert=signed.cert, signature=b"\x00" * 63)
    with pytest.raises(CertificateFormatError, match="certificate is not valid msgpack"):
        SignedCertificate(cert=b"\xc1", signature=signed.signature)
    envelope = pack_sorted({"cert": signed.cert, "signature": signed.signature, "x": 1})
    with pytest.raises(CertificateFormatError, match="unknown fields"):
        SignedCertificate.decode(envelope)
    with pytest.raises(CertificateFormatError, match="over the"):
        SignedCertificate.decode(b"\x00" * (certs.SIGNED_CERT_BYTES_MAX + 1))
    with pytest.raises(CertificateFormatError, match="must be bytes"):
        SignedCertificate.decode(bytearray(signed.encode()))  # type: ignore[arg-type]


# --- issue and verify ---------------------------------------------------------------------


def test_issue_then_verify() -> None:
    ca = make_ca()
    key = node_key()
    signed = issue_default(ca, roles=["operator", "admin"])
    cert = certs.verify(signed, ca.pubkey, now=NOW, revoked_serials=frozenset())
    assert cert.cluster_id == ca.cluster_id
    assert cert.node_pubkey == bytes(key.verify_key)
    assert cert.roles == ("admin", "operator")
    assert cert.not_before == int(NOW) - CERT_CLOCK_SKEW_S
    assert cert.not_after == int(NOW) + DAY_S
    transported = SignedCertificate.decode(signed.encode())
    assert certs.verify(transported, ca.pubkey, now=NOW, revoked_serials=()) == cert


def test_validity_window_boundaries() -> None:
    ca = make_ca()
    cert = issue_default(ca).unverified_certificate
    for now in (cert.not_before, cert.not_after - 0.001):
        certs.verify(issue_default(ca), ca.pubkey, now=now, revoked_serials=())
    with pytest.raises(
        CertificateExpiredError, match=r"serial 7 .*expired at 2026-09-22T14:13:20Z"
    ):
        certs.verify(issue_default(ca), ca.pubkey, now=cert.not_after, revoked_serials=())
    with pytest.raises(CertificateExpiredError, match=r"not valid before 2026-09-21T14:08:20Z"):
        certs.verify(issue_default(ca), ca.pubkey, now=cert.not_before - 1, revoked_serials=())


def test_verify_refuses_another_clusters_certificate() -> None:
    ours, theirs = make_ca(1), make_ca(9)
    with pytest.raises(UnknownClusterError, match=f"for cluster {theirs.cluster_id}"):
        certs.verify(issue_default(theirs), ours.pubkey, now=NOW, revoked_serials=())


def test_verify_refuses_a_forged_signature() -> None:
    ours, forger = make_ca(1), make_ca(9)
    signed = issue_default(ours)
    forged = SignedCertificate(cert=signed.cert, signature=forger.sign(signed.cert))
    with pytest.raises(BadSignatureError, match="serial 7"):
        certs.verify(forged, ours.pubkey, now=NOW, revoked_serials=())
    # A certificate edited after signing keeps its old signature.
    edited = replace(signed.unverified_certificate, roles=("admin",)).encode()
    tampered = SignedCertificate(cert=edited, signature=signed.signature)
    with pytest.raises(BadSignatureError):
        certs.verify(tampered, ours.pubkey, now=NOW, revoked_serials=())
    # The signature covers the context, not the bare bytes.
    bare = SignedCertificate(
        cert=signed.cert, signature=ours.signing_key.sign(signed.cert).signature
    )
    with pytest.raises(BadSignatureError):
        certs.verify(bare, ours.pubkey, now=NOW, revoked_serials=())


def test_verify_refuses_revoked_serials_before_checking_time() -> None:
    ca = make_ca()
    signed = issue_default(ca)
    with pytest.raises(CertificateRevokedError, match=r"serial 7 .* is revoked"):
        certs.verify(signed, ca.pubkey, now=NOW, revoked_serials={3, 7})
    with pytest.raises(CertificateRevokedError):
        certs.verify(signed, ca.pubkey, now=NOW + 10 * DAY_S, revoked_serials=[7])
    certs.verify(signed, ca.pubkey, now=NOW, revoked_serials={3, 8})


def test_all_verification_errors_are_certificate_errors() -> None:
    for error in (
        CertificateFormatError,
        UnknownClusterError,
        BadSignatureError,
        CertificateRevokedError,
        CertificateExpiredError,
    ):
        assert issubclass(error, CertificateError)


def test_issue_rejects_misuse() -> None:
    ca = make_ca()
    for ttl_s in (0, -1, certs.CERT_TTL_S_MAX + 1, 1.5, True):
        with pytest.raises(ValueError, match="ttl_s"):
            issue_default(ca, ttl_s=ttl_s)
    with pytest.raises(CertificateFormatError, match="unknown roles"):
        issue_default(ca, roles=("superuser",))
    with pytest.raises(ValueError, match="ca_pubkey must be 32 bytes"):
        certs.verify(issue_default(ca), ca.pubkey[:31], now=NOW, revoked_serials=())


def test_format_utc_never_fails() -> None:
    assert certs.format_utc(0) == "1970-01-01T00:00:00Z"
    assert certs.format_utc(certs.TIMESTAMP_S_MAX) == "9999-12-31T23:59:59Z"
    assert certs.format_utc(-1) == "@-1"
    assert certs.format_utc(float("inf")) == "@inf"


# --- sealed CA key ------------------------------------------------------------------------


def test_seal_and_open_ca_key_for_an_admin_identity() -> None:
    ca = make_ca()
    admin = node_key(3)
    sealed = certs.seal_ca_key(ca, bytes(admin.verify_key.to_curve25519_public_key()))
    assert len(sealed) == certs.SEALED_CA_KEY_BYTES
    assert bytes(ca.signing_key) not in sealed
    opened = certs.open_ca_key(
        sealed, bytes(admin.to_curve25519_private_key()), expected_ca_pubkey=ca.pubkey
    )
    assert opened == ca


def test_open_ca_key_refuses_what_it_cannot_trust() -> None:
    ca = make_ca()
    recipient = nacl.public.PrivateKey(b"\x04" * 32)
    sealed = certs.seal_ca_key(ca, bytes(recipient.public_key))
    with pytest.raises(CAKeyError, match="does not open"):
        certs.open_ca_key(sealed, b"\x05" * 32)
    with pytest.raises(CAKeyError, match="does not open"):
        certs.open_ca_key(sealed[:-1] + bytes([sealed[-1] ^ 1]), bytes(recipient))
    with pytest.raises(CAKeyError, match="must be"):
        certs.open_ca_key(sealed + b"\x00", bytes(recipient))
    with pytest.raises(CAKeyError, match="not the expected one"):
        certs.open_ca_key(sealed, bytes(recipient), expected_ca_pubkey=make_ca(9).pubkey)
    other_payload = nacl.public.SealedBox(recipient.public_key).encrypt(b"x" * 59)
    with pytest.raises(CAKeyError, match="does not hold"):
        certs.open_ca_key(other_payload, bytes(recipient))


# --- properties ---------------------------------------------------------------------------

node_names = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=64
)
certificates = st.builds(
    MembershipCertificate,
    cluster_id=st.text(alphabet=certs.BASE32_ALPHABET, min_size=26, max_size=26),
    node_pubkey=st.binary(min_size=32, max_size=32),
    node_name=node_names,
    roles=st.sets(st.sampled_from(ROLES), min_size=1).map(tuple),
    serial=st.integers(0, certs.SERIAL_MAX),
    not_before=st.integers(0, certs.TIMESTAMP_S_MAX - 1),
    not_after=st.just(certs.TIMESTAMP_S_MAX),
)


@PROPERTY
@given(certificates)
def test_property_certificate_round_trip(cert: MembershipCertificate) -> None:
    assert MembershipCertificate.decode(cert.encode()) == cert


@PROPERTY
@given(certificates, st.binary(min_size=64, max_size=64))
def test_property_signed_certificate_round_trip(cert: MembershipCertificate, sig: bytes) -> None:
    signed = SignedCertificate(cert=cert.encode(), signature=sig)
    assert SignedCertificate.decode(signed.encode()) == signed


@PROPERTY
@given(st.binary(max_size=600))
def test_property_random_bytes_raise_only_format_errors(data: bytes) -> None:
    for decode in (MembershipCertificate.decode, SignedCertificate.decode):
        with contextlib.suppress(CertificateFormatError):
            decode(data)


@PROPERTY
@given(st.data())
def test_property_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    ca = make_ca()
    encoded = bytearray(issue_default(ca).encode())
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(1, 255))
    try:
        signed = SignedCertificate.decode(bytes(encoded))
    except CertificateFormatError:
        return
    with pytest.raises(CertificateError):
        certs.verify(signed, ca.pubkey, now=NOW, revoked_serials=())
