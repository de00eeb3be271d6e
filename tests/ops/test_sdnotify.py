"""sd_notify: the environment systemd passes, the datagrams, and a real daemon's READY,
WATCHDOG and STOPPING read from a socket the test binds."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.conftest import _ready, program
from vramancer_node.sdnotify import NotifyConfigError, SdNotifier

READ_TIMEOUT_S = 60.0


@pytest.fixture
def notify_socket(state_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound at a path, as systemd's notify socket is."""
    path = state_dir / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(READ_TIMEOUT_S)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def _abstract_socket() -> tuple[socket.socket, str]:
    name = f"vrm-notify-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(READ_TIMEOUT_S)
    return sock, "@" + name


def _lines(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_no_notify_socket_means_no_notifier() -> None:
    assert SdNotifier.from_environ({}) is None
    assert SdNotifier.from_environ({"NOTIFY_SOCKET": ""}) is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"NOTIFY_SOCKET": "relative/sock"}, "absolute path or @abstract-name"),
        ({"NOTIFY_SOCKET": "vsock:2:1234"}, "vsock addresses are not supported"),
        ({"NOTIFY_SOCKET": "/" + "x" * 200}, "longer than 107 bytes"),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "soon"}, "is not an integer"),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"}, "must be positive"),
    ],
)
def test_unusable_environment_is_a_clear_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(NotifyConfigError, match=message):
        SdNotifier.from_environ(environ)


def test_watchdog_period_is_halved_and_belongs_to_watchdog_pid() -> None:
    base = {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000"}
    mine = SdNotifier.from_environ({**base, "WATCHDOG_PID": "4242"}, pid=4242)
    theirs = SdNotifier.from_environ({**base, "WATCHDOG_PID": "4243"}, pid=4242)
    any_pid = SdNotifier.from_environ(base, pid=4242)
    assert mine is not None and theirs is not None and any_pid is not None
    assert mine.watchdog_interval_s == 15.0
    assert any_pid.watchdog_interval_s == 15.0
    assert theirs.watchdog_interval_s is None
    for notifier in (mine, theirs, any_pid):
        notifier.close()


def test_datagrams_to_a_path_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier is not None
    notifier.ready("running:\n  3 members")
    notifier.status("x" * 2000)
    notifier.stopping("bye")
    assert _lines(sock) == ["READY=1", "STATUS=running: 3 members"]
    assert _lines(sock) == ["STATUS=" + "x" * 512]
    assert _lines(sock) == ["STOPPING=1", "STATUS=bye"]
    assert (notifier.sent, notifier.send_failures) == (3, 0)
    notifier.close()


def test_abstract_socket_and_a_vanished_listener() -> None:
    sock, name = _abstract_socket()
    notifier = SdNotifier.from_environ({"NOTIFY_SOCKET": name})
    assert notifier is not None
    notifier.status("hello")
    assert _lines(sock) == ["STATUS=hello"]
    sock.close()  # the manager went away: sending must not raise
    assert notifier.send("STATUS=lost") is False
    assert notifier.send_failures == 1
    notifier.close()


async def test_watchdog_pings_only_while_healthy(
    notify_socket: tuple[socket.socket, str], autojump_clock: trio.testing.MockClock
) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    notifier = SdNotifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert notifier is not None and notifier.watchdog_interval_s == 1.0
    start = trio.current_time()

    def healthy() -> bool:  # healthy for 3 s, sick for 3 s, healthy again
        elapsed = trio.current_time() - start
        return not 3 <= elapsed < 6

    with trio.move_on_after(8.5):
        await notifier.watchdog(healthy)
    pings = []
    while True:
        try:
            pings.append(sock.recv(64))
        except BlockingIOError:
            break
    # t = 1, 2 (healthy), 3, 4, 5 (sick: silent), 6, 7, 8 (healthy)
    assert pings == [b"WATCHDOG=1"] * 5
    notifier.close()


async def test_status_follows_describe_without_a_watchdog(
    notify_socket: tuple[socket.socket, str], autojump_clock: trio.testing.MockClock
) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    notifier = SdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier is not None
    start = trio.current_time()

    def describe() -> str:  # changes once, at 25 s
        return "running: 1 alive" if trio.current_time() - start < 25 else "running: 2 alive"

    with trio.move_on_after(100):
        await notifier.watchdog(lambda: True, describe)
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(64))
        except BlockingIOError:
            break
    assert datagrams == [b"STATUS=running: 2 alive"]  # the first text went with READY=1
    notifier.close()


async def test_no_watchdog_returns_at_once(notify_socket: tuple[socket.socket, str]) -> None:
    _sock, path = notify_socket
    notifier = SdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier is not None
    with trio.fail_after(5):
        await notifier.watchdog(lambda: True)
    notifier.close()


def test_real_daemon_notifies_ready_watchdog_and_stopping(
    state_dir: Path, clean_env: dict[str, str]
) -> None:
    """READY=1 only once /readyz answers 200; WATCHDOG=1 at WatchdogSec/2; STOPPING=1 at
    SIGTERM; the daemon exits 0."""
    sock, name = _abstract_socket()
    # No WATCHDOG_PID: the main process pings (what systemd before 251 passes).
    env = {**clean_env, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"}
    argv = [
        program("vramancer-node"), "join", "--state-dir", str(state_dir / "s"),
        "--preset", "local", "--listen", "127.0.0.1:0", "--name", "notified",
        "--log-format", "json",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    try:
        first = _lines(sock)
        assert first[0] == "READY=1", first
        assert first[1].startswith("STATUS=running: node notified ("), first
        assert _ready(state_dir / "s" / "api.sock"), "READY=1 came before /readyz said ready"
        assert first[1].endswith(", 1 alive"), first
        assert _lines(sock)[0] == "WATCHDOG=1"
        assert _lines(sock)[0] == "WATCHDOG=1"
        proc.send_signal(signal.SIGTERM)
        while (lines := _lines(sock))[0] == "WATCHDOG=1":
            pass
        assert lines == ["STOPPING=1", "STATUS=stopping: leaving the cluster"]
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_daemon_refuses_an_unusable_notify_socket(
    state_dir: Path, clean_env: dict[str, str]
) -> None:
    env = {**clean_env, "NOTIFY_SOCKET": "notify.sock"}
    result = subprocess.run(
        [program("vramancer-node"), "join", "--state-dir", str(state_dir / "s"),
         "--preset", "local", "--listen", "127.0.0.1:0"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "NOTIFY_SOCKET='notify.sock': expected an absolute path" in result.stderr
    assert not (state_dir / "s").exists()  # refused before touching the state directory
