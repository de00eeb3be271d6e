"""The pure control state machine: codec round trips, strict decoding, deterministic
apply with rejections, snapshots."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import certs
from crypto.certs import ClusterCA
from crypto.identity import generate_identity
from protocol.control import (
    AdmitMember,
    Applied,
    ControlState,
    FederationLink,
    FederationLinkAdd,
    FederationLinkRemove,
    PlacementEpoch,
    Rejected,
    Revoke,
    StageRange,
    decode_command,
    encode_command,
)
from protocol.errors import LocalProtocolError, RemoteProtocolError

CA = ClusterCA.generate()
FINGERPRINT = "a" * 52


def admission(serial: int, name: str = "n") -> tuple[str, AdmitMember]:
    identity = generate_identity()
    signed = certs.issue(
        CA,
        node_pubkey=identity.public_key,
        node_name=name,
        roles=("member",),
        serial=serial,
        now=1_700_000_000,
        ttl_s=3600,
    )
    node_id = identity.node_id
    return node_id, AdmitMember(node_id=node_id, certificate=signed.encode())


def placement(model: str, epoch: int, *nodes: str) -> PlacementEpoch:
    stages = tuple(
        StageRange(node_id=n, device_index=0, first_layer=4 * i, last_layer_exclusive=4 * i + 4)
        for i, n in enumerate(nodes)
    )
    return PlacementEpoch(model_id=model, epoch=epoch, stages=stages)


class Log:
    """Feeds commands to a state at consecutive indexes."""

    def __init__(self) -> None:
        self.state = ControlState()
        self.index = 0

    def apply(self, command: object) -> object:
        self.index += 1
        data = command if isinstance(command, bytes) else encode_command(command)  # type: ignore[arg-type]
        return self.state.apply(self.index, data)


# -- codec ---------------------------------------------------------------------

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
names = st.text(alphabet=BASE32, min_size=1, max_size=26)
stages = st.lists(
    st.tuples(names, st.integers(0, 1023), st.integers(1, 64), st.integers(0, 2**40)),
    min_size=1,
    max_size=8,
)


@st.composite
def commands(draw: st.DrawFn) -> object:
    kind = draw(st.integers(1, 5))
    if kind == 1:
        return AdmitMember(
            node_id=draw(names), certificate=draw(st.binary(min_size=1, max_size=64))
        )
    if kind == 2:
        return Revoke(serial=draw(st.integers(1, 2**63 - 1)), reason=draw(st.text(max_size=40)))
    if kind == 3:
        first, items = 0, []
        for node, device, layers, memory in draw(stages):
            stage = StageRange(
                node_id=node,
                device_index=device,
                first_layer=first,
                last_layer_exclusive=first + layers,
                memory_bytes=memory,
            )
            items.append(stage)
            first += layers
        model = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,20}", fullmatch=True))
        return PlacementEpoch(
            model_id=model,
            epoch=draw(st.integers(1, 2**40)),
            stages=tuple(items),
            decode_ns_per_token=draw(st.integers(0, 2**40)),
            context_tokens=draw(st.integers(0, 1 << 24)),
            dtype=draw(st.sampled_from(["", "bf16", "float32"])),
            model_config=draw(st.text(max_size=200)),
            method=draw(st.sampled_from(["", "exact", "heuristic", "explicit"])),
        )
    link = FederationLink(
        address=f"{draw(names)}:{draw(st.integers(0, 65535))}",
        ca_fingerprint=draw(st.text(alphabet=BASE32, min_size=52, max_size=52)),
    )
    return FederationLinkAdd(link=link) if kind == 4 else FederationLinkRemove(link=link)


@given(commands())
def test_every_command_round_trips(command: object) -> None:
    data = encode_command(command)  # type: ignore[arg-type]
    assert decode_command(data) == command


@given(commands(), st.data())
def test_truncated_or_flipped_commands_never_escape_as_other_errors(command, data) -> None:
    encoded = encode_command(command)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    for mangled in (
        encoded[:cut],
        encoded[:cut] + bytes([encoded[cut] ^ 0xFF]) + encoded[cut + 1 :],
    ):
        with contextlib.suppress(RemoteProtocolError):
            decode_command(mangled)


def test_placement_codec_versions() -> None:
    """A placement without a method keeps the version-1 bytes written before version 2
    existed; one with a method is version 2 and round trips with it."""
    stage = StageRange(node_id="n", device_index=0, first_layer=0, last_layer_exclusive=2)
    plain = PlacementEpoch(model_id="m", epoch=1, stages=(stage,))
    old_bytes = b"\x01" + msgpack.packb([3, "m", 1, [["n", 0, 0, 2, 0]], 0, 0, "", ""])
    assert encode_command(plain) == old_bytes and decode_command(old_bytes) == plain
    explicit = PlacementEpoch(model_id="m", epoch=1, stages=(stage,), method="explicit")
    data = encode_command(explicit)
    assert data[0] == 2 and decode_command(data).method == "explicit"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="method"):
        PlacementEpoch(model_id="m", epoch=1, stages=(stage,), method="guess")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "2 to"),
        (b"\x03" + msgpack.packb([2, 1, ""]), "codec version"),
        (b"\x02" + msgpack.packb([2, 1, ""]), "canonical"),  # version 1 expresses it
        (b"\x02" + msgpack.packb([3, "m", 1, [["n", 0, 0, 1, 0]], 0, 0, "", "", ""]), "canonical"),
        (b"\x02" + msgpack.packb([3, "m", 1, [["n", 0, 0, 1, 0]], 0, 0, "", ""]), "array of 9"),
        (
            b"\x01" + msgpack.packb([3, "m", 1, [["n", 0, 0, 1, 0]], 0, 0, "", "", "exact"]),
            "array of 8",
        ),
        (
            b"\x02" + msgpack.packb([3, "m", 1, [["n", 0, 0, 1, 0]], 0, 0, "", "", "magic"]),
            "method",
        ),
        (b"\x02" + msgpack.packb([3, "m", 1, [["n", 0, 0, 1, 0]], 0, 0, "", "", 7]), "method"),
        (b"\x01\xc1", "malformed"),
        (b"\x01" + msgpack.packb([9, 1]), "known CommandKind"),
        (b"\x01" + msgpack.packb([True, 1, ""]), "command kind"),
        (b"\x01" + msgpack.packb([2, 1]), "array of 3"),
        (b"\x01" + msgpack.packb([2, 0, ""]), "serial"),
        (b"\x01" + msgpack.packb([2, True, ""]), "revoke serial"),
        (b"\x01" + msgpack.packb([1, "n", "not-bin"]), "bin"),
        (b"\x01" + msgpack.packb({"kind": 2}), "malformed"),
        (b"\x01" + msgpack.packb([3, "m", 1, [], 0, 0, "", ""]), "stages"),
        (b"\x01" + msgpack.packb([3, "../x", 1, [["n", 0, 0, 1, 0]], 0, 0, "", ""]), "model id"),
        (
            b"\x01" + msgpack.packb([3, "m", 1, [["n", 0, 2, 1, 0]], 0, 0, "", ""]),
            "at least one layer",
        ),
        (b"\x01" + msgpack.packb([3, "m", 1, [["n", 0, 0, 1, 0]], 0]), "array of 8"),
        (b"\x01" + msgpack.packb([3, "m", 1, [["n", 0, 0, 1, 0]], 0, -1, "", ""]), "context"),
        (b"\x01" + msgpack.packb([4, "nohost", FINGERPRINT]), "HOST:PORT"),
        (b"\x01" + msgpack.packb([4, "h:1", "XYZ"]), "ca_fingerprint"),
        (b"\x01" + msgpack.packb([2, 1, "x"]) + b"\x00", "malformed"),
        (b"\x01\x93\xcd\x00\x02\x01\xa0", "canonical"),  # kind as a uint16
    ],
)
def test_bad_commands_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_command(data)


# -- apply ---------------------------------------------------------------------


def test_admission_revocation_and_readmission() -> None:
    log = Log()
    node_id, admit = admission(serial=2)
    assert isinstance(log.apply(admit), Applied)
    assert log.state.is_active(node_id) and log.state.members[node_id].serial == 2
    again = log.apply(admit)
    assert isinstance(again, Rejected) and "already a member" in again.reason
    assert isinstance(log.apply(Revoke(serial=2, reason="lost laptop")), Applied)
    assert not log.state.is_active(node_id) and log.state.revoked_serials() == {2}
    twice = log.apply(Revoke(serial=2, reason=""))
    assert isinstance(twice, Rejected) and "already revoked" in twice.reason
    stale = log.apply(admit)  # the revoked certificate cannot come back
    assert isinstance(stale, Rejected) and "revoked" in stale.reason


def test_admission_needs_the_cluster_ca_signature() -> None:
    state = ControlState(ca_pubkey=CA.pubkey)
    _, genuine = admission(serial=2)
    other_ca = ClusterCA.generate()
    identity = generate_identity()
    forged_cert = certs.issue(
        other_ca, node_pubkey=identity.public_key, node_name="forged", roles=("admin",),
        serial=3, now=1_700_000_000, ttl_s=3600,
    )  # fmt: skip
    forged = AdmitMember(node_id=identity.node_id, certificate=forged_cert.encode())
    outcome = state.apply(1, encode_command(forged))
    assert isinstance(outcome, Rejected) and "not signed by the CA" in outcome.reason
    assert isinstance(state.apply(2, encode_command(genuine)), Applied)
    restored = ControlState.restore(state.snapshot(), CA.pubkey)
    assert restored.members == state.members and restored.ca_pubkey == CA.pubkey


def test_admission_must_match_its_certificate() -> None:
    log = Log()
    node_a, admit_a = admission(serial=5)
    node_b, admit_b = admission(serial=5)
    lying = AdmitMember(node_id=node_b, certificate=admit_a.certificate)
    outcome = log.apply(lying)
    assert isinstance(outcome, Rejected) and f"certificate is for {node_a}" in outcome.reason
    garbage = log.apply(AdmitMember(node_id=node_a, certificate=b"\x00junk"))
    assert isinstance(garbage, Rejected) and "bad certificate" in garbage.reason
    assert isinstance(log.apply(admit_a), Applied)
    taken = log.apply(admit_b)
    assert isinstance(taken, Rejected) and f"belongs to {node_a}" in taken.reason


def test_placement_epochs_increase_by_one_on_active_members() -> None:
    log = Log()
    a, admit_a = admission(2)
    b, admit_b = admission(3)
    log.apply(admit_a)
    log.apply(admit_b)
    assert isinstance(log.apply(placement("m", 1, a, b)), Applied)
    skipped = log.apply(placement("m", 3, a))
    assert isinstance(skipped, Rejected) and "expected 2" in skipped.reason
    assert isinstance(log.apply(placement("m", 2, b, a)), Applied)
    committed = log.state.placement("m")
    assert committed is not None and committed.placement.epoch == 2
    assert [s.node_id for s in committed.placement.stages] == [b, a]
    stranger = log.apply(placement("m", 3, a, "stranger"))
    assert isinstance(stranger, Rejected) and "not an active member" in stranger.reason
    gap = PlacementEpoch(
        model_id="m",
        epoch=3,
        stages=(
            StageRange(node_id=a, device_index=0, first_layer=0, last_layer_exclusive=2),
            StageRange(node_id=b, device_index=0, first_layer=3, last_layer_exclusive=4),
        ),
    )
    assert "must start at 2" in log.apply(gap).reason  # type: ignore[attr-defined]
    log.apply(Revoke(serial=3, reason=""))
    revoked = log.apply(placement("m", 3, b))
    assert isinstance(revoked, Rejected) and "not an active member" in revoked.reason
    assert log.state.rejected_total == 4


def test_federation_links() -> None:
    log = Log()
    link = FederationLink(address="10.0.0.1:7733", ca_fingerprint=FINGERPRINT)
    assert isinstance(log.apply(FederationLinkAdd(link=link)), Applied)
    assert isinstance(log.apply(FederationLinkAdd(link=link)), Rejected)
    other = FederationLink(address="10.0.0.1:7733", ca_fingerprint="b" * 52)
    assert "another CA" in log.apply(FederationLinkRemove(link=other)).reason  # type: ignore[attr-defined]
    assert isinstance(log.apply(FederationLinkRemove(link=link)), Applied)
    assert log.state.federation == {}


def test_garbage_entries_are_rejected_identically_and_never_raise() -> None:
    logs = [Log(), Log()]
    for log in logs:
        for junk in (
            b"\x01",
            b"\xff" * 10,
            b"\x01\x93\x02\x01",
            encode_command(Revoke(serial=1, reason="")) + b"x",
        ):
            assert isinstance(log.apply(junk), Rejected)  # fmt: skip
    assert logs[0].state.snapshot() == logs[1].state.snapshot()
    assert logs[0].state.rejected_total == 4


def test_entries_apply_in_order_only() -> None:
    state = ControlState()
    state.skip(3)
    with pytest.raises(LocalProtocolError, match="out of order"):
        state.apply(3, encode_command(Revoke(serial=1, reason="")))


# -- snapshots -----------------------------------------------------------------


def busy_state() -> ControlState:
    log = Log()
    a, admit_a = admission(2)
    log.apply(admit_a)
    log.apply(admission(3)[1])
    log.apply(Revoke(serial=3, reason="gone"))
    log.apply(placement("llama-tiny", 1, a))
    log.apply(FederationLinkAdd(link=FederationLink(address="h:1", ca_fingerprint=FINGERPRINT)))
    log.apply(b"junk")
    log.state.skip(log.index + 5)
    return log.state


def test_snapshot_restores_an_equal_state() -> None:
    state = busy_state()
    restored = ControlState.restore(state.snapshot())
    assert restored.snapshot() == state.snapshot()
    assert restored.members == state.members and restored.revoked == state.revoked
    assert restored.placements == state.placements and restored.federation == state.federation
    assert restored.applied_index == state.applied_index == 11
    assert list(restored.rejections) == list(state.rejections)
    assert ControlState.restore(b"").snapshot() == ControlState().snapshot()


@given(st.data())
def test_damaged_snapshots_are_refused(data) -> None:
    snapshot = busy_state().snapshot()
    cut = data.draw(st.integers(0, len(snapshot) - 1))
    damaged = snapshot[:cut] + bytes([snapshot[cut] ^ 0x55]) + snapshot[cut + 1 :]
    with contextlib.suppress(RemoteProtocolError):
        ControlState.restore(damaged)
