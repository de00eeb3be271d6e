"""The consensus service: one node's Raft core driven over LMDB, a clock and peers.

Theory of operation
-------------------
:class:`ConsensusService` owns a :class:`~protocol.raft.RaftNode`, its
:class:`~vramancer_node.consensus.storage.RaftStorage` and the replicated
:class:`~protocol.control.ControlState`, and runs three tasks:

* the **tick loop** calls ``RaftNode.tick()`` every ``tick_interval_s``;
* the **ready loop** wakes whenever an input (a tick, a peer's message, a proposal)
  may have produced work and processes each ``Ready`` in the order
  ``protocol/raft/ready.py`` prescribes: persist (snapshot, entries, hard state in one
  synced LMDB transaction on the store's writer thread), *then* send the messages,
  then install the snapshot and apply the committed entries to the control state,
  then ``advance``; then the side effects of newly applied commands (audit records,
  through ``on_outcome``) and a local snapshot when the log has grown by
  ``compact_entries`` since the last one;
* the **transport** (:mod:`vramancer_node.consensus.transport`) feeds peers' messages
  to ``RaftNode.step`` and serves forwarded requests.

Restart: the store's persistent state rebuilds the core, the control state is
restored from the snapshot's data, and the committed entries after it are applied
again *before* the service reports started, so a restarted node shows its committed
state as soon as it is ready.  Side effects are not repeated: the store remembers the
last index whose effects were done (``applied_index``).

Bootstrap: a node whose store is empty and that ``bootstrap()`` says founded the
cluster starts a one-voter cluster (:func:`protocol.raft.bootstrap_state`); every
other node starts empty and learns the configuration from the leader's snapshot
once the leader adds it as a learner.

Proposals: :meth:`ConsensusService.submit` proposes a command on the leader, or
forwards it to the leader (request ``propose``, which the leader accepts only from a
member whose certificate holds the ``admin`` role), and returns once the entry is
committed *and* applied here.  A committed command the state machine refused raises
:class:`ProposalRejected`; no commit within ``proposal_timeout_s`` (no leader, lost
leadership, unreachable leader) raises :class:`ProposalFailed`.

Error handling
--------------
A peer's malformed message raises ``RemoteProtocolError`` out of ``step`` before the
core changes; the transport closes that session and the service goes on.  A store
that cannot be written stops the service (``ConsensusStoreError``): acknowledging
state that is not on disk would break Raft's safety.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from protocol.control import (
    Applied,
    Command,
    ControlState,
    Outcome,
    PlacementEpoch,
    Rejected,
    decode_command,
    encode_command,
)
from protocol.errors import RemoteProtocolError
from protocol.raft import (
    ConfChange,
    EntryKind,
    Message,
    ProposalRefused,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    bootstrap_state,
)
from vramancer_node.audit.writer import WriterThread
from vramancer_node.consensus.storage import RaftStorage
from vramancer_node.consensus.transport import (
    RaftTransport,
    Requester,
    RequestFailed,
    RequestHandler,
)
from vramancer_node.logs import get_logger

log = get_logger("consensus")

COMPACT_ENTRIES_DEFAULT = 1000
"""Applied entries between two local snapshots."""
SUBMIT_RETRY_S = 0.1
"""Pause before asking again who leads (during an election)."""
OP_PROPOSE = "propose"
PROPOSER_ROLE = "admin"
"""Role a member needs to have the leader commit a command it forwards: admission,
revocation and federation are admin acts, and placements are planned by the leader
itself (the ``place`` request any member may send)."""


class ProposalFailed(Exception):
    """The command was not committed (no leader, leadership lost, timeout)."""


class ProposalRejected(Exception):
    """The command was committed and every node's state machine refused it."""

    def __init__(self, reason: str, index: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index


@dataclass(frozen=True, kw_only=True)
class ConsensusSettings:
    """What the service needs from ``NodeConfig.consensus``."""

    tick_interval_s: float
    raft: RaftConfig
    proposal_timeout_s: float
    compact_entries: int = COMPACT_ENTRIES_DEFAULT


OutcomeHook = Callable[[Outcome], Awaitable[None]]


class _Waiter:
    """A local proposal waiting for its entry to be applied."""

    def __init__(self, term: int) -> None:
        self.term = term
        self.done = trio.Event()
        self.outcome: Outcome | None = None
        """None once done: another leader's entry took the index."""


class ConsensusService:
    """Runs one node's Raft core; see the module docstring."""

    def __init__(
        self,
        *,
        node_id: str,
        state_dir: Path,
        settings: ConsensusSettings,
        transport: RaftTransport,
        bootstrap: Callable[[], bool],
        on_outcome: OutcomeHook,
        ca_pubkey: bytes | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.state_dir = Path(state_dir)
        self.settings = settings
        self.transport = transport
        self._bootstrap = bootstrap
        self._on_outcome = on_outcome
        self.ca_pubkey = ca_pubkey
        """The cluster CA the control state checks admitted certificates against."""
        self._rng = rng or random.Random()
        self._writer = WriterThread("consensus-writer")
        self._storage: RaftStorage | None = None
        self._raft: RaftNode | None = None
        self.control = ControlState(ca_pubkey)
        self.request_handlers: dict[str, RequestHandler] = {OP_PROPOSE: self._serve_propose}
        """Forwarded-request handlers by op; the wiring adds its own."""
        self._wake = trio.Event()
        self._applied = trio.Event()
        self.placement_changed = trio.Event()
        """Set (and replaced by a fresh one) whenever a placement epoch is applied."""
        self._waiters: dict[int, _Waiter] = {}
        self._effects_through = 0
        self.started = trio.Event()

    @property
    def raft(self) -> RaftNode:
        if self._raft is None:
            raise RuntimeError("the consensus service has not started")
        return self._raft

    # -- lifecycle ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._writer.start()
        try:
            await self._open()
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    functools.partial(self.transport.run, self._step, self._serve_request)
                )
                nursery.start_soon(self._tick_loop)
                nursery.start_soon(self._ready_loop)
                self.started.set()
                log.info("consensus running", extra=self.status())
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                if self._storage is not None:
                    await self._writer.run_sync(self._storage.close)
                await self._writer.stop()

    async def _open(self) -> None:
        storage = await self._writer.run_sync(RaftStorage.open, self.state_dir)
        self._storage = storage
        state = await self._writer.run_sync(storage.load)
        if state is None and self._bootstrap():
            state = bootstrap_state([self.node_id])
            save = functools.partial(
                storage.save, snapshot=state.snapshot, hard_state=state.hard_state
            )
            await self._writer.run_sync(save)
            log.info("bootstrapped a one-voter cluster")
        self._effects_through = await self._writer.run_sync(storage.applied_index)
        self._raft = RaftNode(self.node_id, self.settings.raft, state, self._rng)
        if state is not None:
            self.control = ControlState.restore(state.snapshot.data, self.ca_pubkey)
        await self._drain_ready()  # re-applies the committed entries of a restarted node

    async def _tick_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.tick_interval_s)
            self.raft.tick()
            self._wake.set()

    async def _ready_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self._drain_ready()

    def _step(self, message: Message) -> None:
        self.raft.step(message)  # RemoteProtocolError: the transport drops that session
        self._wake.set()

    # -- Ready processing -------------------------------------------------------------

    async def _drain_ready(self) -> None:
        raft = self.raft
        while raft.has_ready():
            ready = raft.ready()
            await self._persist(ready)
            for message in ready.messages:
                self.transport.send(message)
            outcomes = self._apply(ready)
            raft.advance(ready)
            if ready.soft_state is not None:
                log.info(
                    "consensus role",
                    extra={
                        "role": ready.soft_state.role.value,
                        "leader": ready.soft_state.leader_id,
                        "term": raft.term,
                    },
                )
            await self._after_apply(outcomes)
            await self._maybe_compact()

    async def _persist(self, ready: Ready) -> None:
        assert self._storage is not None
        if ready.snapshot is None and not ready.entries and ready.hard_state is None:
            return
        save = functools.partial(
            self._storage.save,
            snapshot=ready.snapshot,
            entries=ready.entries,
            hard_state=ready.hard_state,
        )
        await self._writer.run_sync(save)

    def _apply(self, ready: Ready) -> list[Outcome]:
        if ready.snapshot is not None:
            try:
                self.control = ControlState.restore(ready.snapshot.data, self.ca_pubkey)
            except RemoteProtocolError as exc:
                log.error("the leader's snapshot is unusable", extra={"detail": str(exc)})
        outcomes: list[Outcome] = []
        for entry in ready.committed_entries:
            if entry.index <= self.control.applied_index:
                continue  # covered by the snapshot just installed
            if entry.kind is EntryKind.NORMAL and entry.data:
                outcome = self.control.apply(entry.index, entry.data)
                outcomes.append(outcome)
            else:
                self.control.skip(entry.index)
                outcome = None
            waiter = self._waiters.get(entry.index)
            if waiter is not None:
                waiter.outcome = outcome if entry.term == waiter.term else None
                waiter.done.set()
        if ready.committed_entries or ready.snapshot is not None:
            self._applied.set()
            self._applied = trio.Event()
        return outcomes

    async def _after_apply(self, outcomes: list[Outcome]) -> None:
        fresh = [o for o in outcomes if o.index > self._effects_through]
        for outcome in fresh:
            if isinstance(outcome, Rejected):
                log.warning(
                    "control command rejected",
                    extra={"log_index": outcome.index, "reason": outcome.reason},
                )
            try:
                await self._on_outcome(outcome)
            except Exception:
                log.exception("recording a committed command failed")
        if fresh:
            assert self._storage is not None
            self._effects_through = fresh[-1].index
            await self._writer.run_sync(self._storage.set_applied_index, self._effects_through)
        if any(isinstance(o, Applied) and isinstance(o.command, PlacementEpoch) for o in outcomes):
            self.placement_changed.set()
            self.placement_changed = trio.Event()

    async def _maybe_compact(self) -> None:
        raft, storage = self.raft, self._storage
        assert storage is not None
        applied = self.control.applied_index
        if applied - raft.log.snapshot.index < self.settings.compact_entries:
            return
        if raft.log.applied != applied:
            return
        snapshot = raft.compact(applied, self.control.snapshot())
        await self._writer.run_sync(storage.compact, snapshot)
        log.info("consensus log compacted", extra={"log_index": applied})

    # -- proposals ------------------------------------------------------------------

    async def wait_applied(self, index: int) -> None:
        """Wait until this node applied the entry at ``index``."""
        while self.control.applied_index < index:
            await self._applied.wait()

    async def submit(self, command: Command) -> Applied:
        """Commit ``command`` through the leader; return once applied here."""
        with trio.move_on_after(self.settings.proposal_timeout_s) as scope:
            result = await self._submit(command)
        if scope.cancelled_caught:
            raise ProposalFailed(
                f"not committed within {self.settings.proposal_timeout_s:g} s"
                f" (leader: {self.raft.leader_id or 'none known'})"
            )
        return result

    async def _submit(self, command: Command) -> Applied:
        data = encode_command(command)
        while True:
            raft = self.raft
            if raft.role is Role.LEADER:
                try:
                    return await self._propose(data)
                except ProposalFailed as exc:
                    log.info("proposal lost; retrying", extra={"detail": str(exc)})
            elif raft.leader_id is not None:
                try:
                    reply = await self.transport.request(raft.leader_id, OP_PROPOSE, data)
                except RequestFailed as exc:
                    log.info("forwarding to the leader failed", extra={"detail": str(exc)})
                else:
                    if reply.get("ok") is True and isinstance(reply.get("index"), int):
                        await self.wait_applied(reply["index"])
                        return Applied(index=reply["index"], command=command)
                    if reply.get("error") == "rejected":
                        raise ProposalRejected(str(reply.get("reason")), int(reply.get("index", 0)))
                    if reply.get("error") == "forbidden":
                        raise PermissionError(str(reply.get("reason")))
            await trio.sleep(SUBMIT_RETRY_S)

    async def _propose(self, data: bytes) -> Applied:
        """Leader: append ``data``, wait for its commit and application here."""
        raft = self.raft
        try:
            index = raft.propose(data)
        except ProposalRefused as exc:
            raise ProposalFailed(str(exc)) from exc
        waiter = self._waiters[index] = _Waiter(raft.term)
        self._wake.set()
        try:
            await waiter.done.wait()
        finally:
            del self._waiters[index]
        outcome = waiter.outcome
        if outcome is None:
            raise ProposalFailed(f"entry {index} was replaced by another leader's")
        if isinstance(outcome, Rejected):
            raise ProposalRejected(outcome.reason, outcome.index)
        return outcome

    def propose_conf_change(self, change: ConfChange) -> int:
        """Leader: log one configuration change (raises ``ProposalRefused``)."""
        index = self.raft.propose_conf_change(change)
        self._wake.set()
        return index

    async def _serve_request(self, requester: Requester, op: str, payload: Any) -> dict[str, Any]:
        handler = self.request_handlers.get(op)
        if handler is None:
            return {"ok": False, "error": "unknown_op", "reason": f"unknown request {op!r:.40}"}
        return await handler(requester, op, payload)

    async def _serve_propose(self, requester: Requester, op: str, payload: Any) -> dict[str, Any]:
        if PROPOSER_ROLE not in requester.roles:
            log.warning(
                "forwarded proposal refused: not an admin",
                extra={"peer_node_id": requester.node_id},
            )
            return {
                "ok": False,
                "error": "forbidden",
                "reason": f"only a member with the {PROPOSER_ROLE} role may forward proposals",
            }
        if self.raft.role is not Role.LEADER:
            return {"ok": False, "error": "not_leader", "leader": self.raft.leader_id}
        if not isinstance(payload, bytes):
            return {"ok": False, "error": "bad_request", "reason": "the payload is not bytes"}
        try:
            decode_command(payload)
        except RemoteProtocolError as exc:
            return {"ok": False, "error": "bad_request", "reason": str(exc)}
        try:
            with trio.fail_after(self.settings.proposal_timeout_s):
                applied = await self._propose(payload)
        except ProposalRejected as exc:
            return {"ok": False, "error": "rejected", "reason": exc.reason, "index": exc.index}
        except (ProposalFailed, trio.TooSlowError) as exc:
            return {"ok": False, "error": "failed", "reason": str(exc) or "timed out"}
        return {"ok": True, "index": applied.index}

    # -- views ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``consensus`` object of ``vramancer status``."""
        if self._raft is None:
            return {"role": "starting"}
        raft = self._raft
        return {
            "role": raft.role.value,
            "term": raft.term,
            "leader": raft.leader_id,
            "commit_index": raft.log.committed,
            "applied_index": self.control.applied_index,
            "voters": sorted(raft.conf.voters),
            "learners": sorted(raft.conf.learners),
            "members": [m.node_id for m in self.control.active_members()],
            "revoked_serials": sorted(self.control.revoked_serials()),
            "placements": {
                model: committed.placement.epoch
                for model, committed in sorted(self.control.placements.items())
            },
            "rejected": self.control.rejected_total,
            "elections": {"started": raft.elections_started, "won": raft.elections_won},
            "transport": self.transport.stats(),
        }
