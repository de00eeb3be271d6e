"""An in-memory stand-in for :class:`~vramancer_node.consensus.RaftTransport`.

Messages go through the real codec (encode, then decode at the receiver) into each
node's bounded channel; forwarded requests call the receiver's handler directly.  A
node that :meth:`FakeRaftNet.isolate` cut off sends and receives nothing, and a node
whose service stopped is simply absent.
"""

from __future__ import annotations

from typing import Any

import trio

from protocol.errors import RemoteProtocolError
from protocol.raft import Message, decode, encode
from vramancer_node.consensus.transport import (
    MessageHandler,
    Requester,
    RequestFailed,
    RequestHandler,
)

QUEUE_MAX = 1024
REQUEST_LATENCY_S = 0.002


class FakeRaftNet:
    def __init__(self) -> None:
        self.nodes: dict[str, FakeTransport] = {}
        self.isolated: set[str] = set()
        self.delivered = 0

    def transport(
        self, node_id: str, roles: tuple[str, ...] = ("admin", "member")
    ) -> FakeTransport:
        return FakeTransport(self, node_id, roles)

    def isolate(self, node_id: str) -> None:
        self.isolated.add(node_id)

    def heal(self) -> None:
        self.isolated.clear()

    def reachable(self, a: str, b: str) -> bool:
        return a not in self.isolated and b not in self.isolated and b in self.nodes


class FakeTransport:
    def __init__(self, net: FakeRaftNet, node_id: str, roles: tuple[str, ...]) -> None:
        self.net = net
        self.node_id = node_id
        self.roles = roles
        """The certificate roles the receiver of this node's requests sees."""
        self._send, self._receive = trio.open_memory_channel[bytes](QUEUE_MAX)
        self._on_request: RequestHandler | None = None
        self.dropped = 0

    async def run(
        self,
        on_message: MessageHandler,
        on_request: RequestHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._on_request = on_request
        self.net.nodes[self.node_id] = self
        try:
            task_status.started()
            async for data in self._receive:
                try:
                    on_message(decode(data))
                except RemoteProtocolError:
                    self.dropped += 1
        finally:
            del self.net.nodes[self.node_id]

    def send(self, message: Message) -> None:
        if not self.net.reachable(self.node_id, message.to_id):
            self.dropped += 1
            return
        try:
            self.net.nodes[message.to_id]._send.send_nowait(encode(message))
            self.net.delivered += 1
        except trio.WouldBlock:
            self.dropped += 1

    async def request(self, peer_id: str, op: str, payload: Any) -> dict[str, Any]:
        await trio.sleep(REQUEST_LATENCY_S)
        if not self.net.reachable(self.node_id, peer_id):
            raise RequestFailed(f"{peer_id} is unreachable")
        handler = self.net.nodes[peer_id]._on_request
        assert handler is not None
        return await handler(Requester(node_id=self.node_id, roles=self.roles), op, payload)

    def stats(self) -> dict[str, Any]:
        return {"dropped": self.dropped}
