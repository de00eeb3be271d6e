"""docs/wire-protocol.md names the wire values the code uses: every frame type, BULK
kind, binding message type, refusal reason, service, membership / Raft / control
message type, activation kind and error code, weights error code, signing context and
the main size limits.  A value added or changed in the code without the page fails
here.  The operator pages of this brief (SLOs, threat model, wire protocol, runbooks)
link only to files that exist."""

from __future__ import annotations

import re
from enum import IntEnum
from pathlib import Path

import pytest

from crypto import gossip, tokens
from crypto.audit.signed import RECORD_SIGNATURE_CONTEXT
from crypto.binding import (
    HANDSHAKE_CONTEXT,
    STATIC_KEY_CONTEXT,
    AdmissionMessageType,
    RefusalReason,
)
from crypto.certs import CERT_SIGNATURE_CONTEXT
from protocol import frames, session, weights
from protocol.control.commands import CommandKind
from protocol.membership import codec as membership_codec
from protocol.membership.messages import MessageType as MembershipType
from protocol.pipeline import activations
from protocol.raft.conf import ConfChangeKind
from protocol.raft.entries import EntryKind
from protocol.raft.messages import MessageType as RaftType
from tests.conftest import REPO_ROOT
from vramancer_node.auditwiring import BULK_KIND_AUDIT
from vramancer_node.consensus.transport import BULK_KIND_RAFT, BULK_KIND_REQUEST
from vramancer_node.membership import BULK_KIND_GOSSIP
from vramancer_node.net.handshake import PROLOGUE

DOC = REPO_ROOT / "docs" / "wire-protocol.md"
PAGES = ("wire-protocol.md", "threat-model.md", "slos.md")
LINK_RE = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
CAMEL = {
    "JOIN_REQUEST": "JoinRequest",
    "ADMISSION_GRANT": "AdmissionGrant",
    "REFUSAL": "Refusal",
    "AUTH": "Auth",
    "WELCOME": "Welcome",
}


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def _rows(doc: str, enum: type[IntEnum]) -> list[str]:
    """Members of ``enum`` missing a table row ``| value | NAME |``."""
    return [m.name for m in enum if f"| {m.value} | {m.name} |" not in doc]


def test_message_type_tables_match_the_codecs(doc: str) -> None:
    for enum in (MembershipType, RaftType, CommandKind):
        assert _rows(doc, enum) == [], enum.__qualname__
    for member in AdmissionMessageType:
        assert f"| {member.value} | `{CAMEL[member.name]}` |" in doc, member.name


def test_enumerations_in_prose_match_the_code(doc: str) -> None:
    for reason in RefusalReason:
        assert f"{reason.value} `{reason.name.lower()}`" in doc, reason.name
    for kind in EntryKind:
        assert f"{kind.value} {kind.name}" in doc, kind.name
    for change in ConfChangeKind:
        assert f"{change.value} {change.name}" in doc, change.name
    for frame_type in frames.FrameType:
        assert f"| 0x{frame_type.value:02x} |" in doc, frame_type.name
    assert "clock" in session.SERVICES
    for service in session.SERVICES:
        assert f"`{service}`" in doc, service
    for code in (*activations.ERROR_CODES, *weights.ERROR_CODES):
        assert f"`{code}`" in doc, code
    for kind in activations.MessageKind:
        assert f"{kind.value} {kind.name.lower()}" in doc, kind.name
    for dtype, size in activations.DTYPE_ITEMSIZE.items():
        assert f"`{dtype}` ({size}" in doc, dtype


def test_bulk_kinds_match_the_services(doc: str) -> None:
    for kind, service in (
        (BULK_KIND_GOSSIP, "gossip"),
        (BULK_KIND_AUDIT, "audit"),
        (BULK_KIND_RAFT, "raft"),
        (BULK_KIND_REQUEST, "raft"),
        (activations.BULK_KIND_ACTIVATION, "stage"),
    ):
        assert re.search(rf"^\| {kind} \| `{service}`", doc, re.MULTILINE), (kind, service)
    kinds = f"| {weights.BULK_KIND_MANIFEST}, {weights.BULK_KIND_DATA} | `weights` |"
    assert kinds in doc


def test_contexts_and_limits_match_the_code(doc: str) -> None:
    for context in (
        PROLOGUE,
        STATIC_KEY_CONTEXT,
        HANDSHAKE_CONTEXT,
        tokens.TOKEN_PROOF_CONTEXT,
        tokens.TOKEN_ID_CONTEXT,
        CERT_SIGNATURE_CONTEXT,
        gossip.AD_PREFIX,
    ):
        assert context.decode() in doc, context
    assert repr(RECORD_SIGNATURE_CONTEXT)[1:].replace("'", '"') in doc
    assert frames.FRAME_PLAINTEXT_BYTES_MAX == 65519 and "65519" in doc
    assert frames.BULK_HEADER_BYTES_MAX == 8192 and "header (<= 8192)" in doc
    assert gossip.DATAGRAM_BYTES_MAX == 1400 and "at most 1400 bytes" in doc
    assert membership_codec.DATAGRAM_PLAINTEXT_BYTES_MAX == 1360 and "1360 bytes" in doc
    assert f"at most {session.SESSION_OPEN_BYTES_MAX} bytes" in doc
    assert f"token_proof` bin {tokens.TOKEN_PROOF_BYTES}" in doc


@pytest.mark.parametrize("page", PAGES)
def test_operator_pages_link_to_files_that_exist(page: str) -> None:
    path: Path = REPO_ROOT / "docs" / page
    for target, _anchor in LINK_RE.findall(path.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (path.parent / target).exists(), f"{page} links to missing {target}"
