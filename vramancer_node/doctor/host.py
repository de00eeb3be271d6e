"""Checks of this machine: GPU visibility, the listen port, mDNS multicast."""

from __future__ import annotations

import errno
import socket
import struct

from vramancer_node.config import parse_hostport
from vramancer_node.devices.errors import DeviceProbeError, ProbeUnavailable
from vramancer_node.doctor.model import CheckResult, DoctorInputs, GpuProbe, result

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353


def default_gpu_probes() -> list[GpuProbe]:
    from vramancer_node.devices.jetson import probe_jetson
    from vramancer_node.devices.nvml import probe_nvml
    from vramancer_node.devices.torchprobe import probe_torch

    return [("nvml", probe_nvml), ("jetson", probe_jetson), ("torch", probe_torch)]


# -- gpu ---------------------------------------------------------------------------


def check_gpu(inputs: DoctorInputs) -> CheckResult:
    probes = inputs.gpu_probes if inputs.gpu_probes is not None else default_gpu_probes()
    problems: list[str] = []
    for name, probe in probes:
        try:
            devices = probe()
        except ProbeUnavailable:
            continue
        except DeviceProbeError as exc:
            problems.append(f"{name}: {exc}")
            continue
        usable = [d for d in devices if d.usable]
        problems += [
            f"{name}: GPU {d.index} ({d.name or '?'}): {d.error}" for d in devices if not d.usable
        ]
        if usable:
            gib = sum(d.memory_free_bytes or 0 for d in usable) / 2**30
            names = ", ".join(f"{d.index}: {d.name}" for d in usable)
            if problems:
                return result(
                    "gpu",
                    "warn",
                    f"{len(usable)} usable GPU(s) ({names}); " + "; ".join(problems),
                    _GPU_FIX,
                )
            return result(
                "gpu", "ok", f"{len(usable)} GPU(s) via {name} ({names}), {gib:.1f} GiB free"
            )
    if problems:
        return result(
            "gpu", "fail", "a GPU is present but cannot be used: " + "; ".join(problems), _GPU_FIX
        )
    return result(
        "gpu",
        "warn",
        "no GPU visible (NVML, Jetson and torch found none): this node offers CPU memory only",
        "on a GPU machine: install the NVIDIA driver (nvidia-smi must work) and, for the "
        "torch fallback, a CUDA build of torch; on a CPU-only board nothing to do",
    )


_GPU_FIX = (
    "run nvidia-smi; check that this user may open /dev/nvidia* (groups video, render) "
    "and, under systemd, the unit's DeviceAllow= (Jetson: install the jetson.conf drop-in)"
)


# -- port --------------------------------------------------------------------------


def _bind_error(kind: int, host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError as exc:
            return exc
    return None


def check_port(inputs: DoctorInputs) -> CheckResult:
    listen = inputs.config.network.listen
    host, port = parse_hostport(listen)
    if inputs.node.running:
        return result("port", "ok", f"{listen} is held by this node (running)")
    if port == 0:
        return result("port", "ok", f"{listen}: the system picks a free port at start")
    for kind, proto in ((socket.SOCK_STREAM, "TCP"), (socket.SOCK_DGRAM, "UDP")):
        exc = _bind_error(kind, host, port)
        if exc is None:
            continue
        if exc.errno == errno.EADDRINUSE:
            return result(
                "port",
                "fail",
                f"{proto} {listen} is in use by another process",
                f"find it with `ss -ltnup 'sport = :{port}'` and stop it, or set "
                "network.listen (--listen) to a free port",
            )
        if exc.errno == errno.EACCES:
            return result(
                "port", "fail", f"{proto} {listen}: permission denied", "use a port above 1023"
            )
        return result(
            "port",
            "fail",
            f"cannot bind {proto} {listen}: {exc.strerror}",
            "set network.listen to an address of this machine (or 0.0.0.0:PORT)",
        )
    return result("port", "ok", f"{listen} is free for TCP (streams) and UDP (gossip)")


# -- mdns --------------------------------------------------------------------------


def _mdns_query() -> bytes:
    """A standard PTR query for ``_vramancer._tcp.local`` (what discovery asks too)."""
    name = b"".join(bytes([len(p)]) + p for p in (b"_vramancer", b"_tcp", b"local")) + b"\0"
    return struct.pack("!6H", 0, 0, 1, 0, 0, 0) + name + struct.pack("!2H", 12, 1)


def check_mdns(inputs: DoctorInputs) -> CheckResult:
    discovery = inputs.config.discovery
    if not discovery.mdns:
        return result("mdns", "ok", "mDNS discovery is off (peers come from network.peers)")
    interface = discovery.mdns_interface or "0.0.0.0"
    where = (
        f"interface {discovery.mdns_interface}" if discovery.mdns_interface else "all interfaces"
    )
    step = "open a UDP socket"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            step = f"join {MDNS_GROUP} on {where}"
            mreq = socket.inet_aton(MDNS_GROUP) + socket.inet_aton(interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            step = f"send a query to {MDNS_GROUP}:{MDNS_PORT}"
            sock.sendto(_mdns_query(), (MDNS_GROUP, MDNS_PORT))
    except OSError as exc:
        fix = (
            f"set discovery.mdns_interface (--mdns-interface) to an IPv4 address of this "
            f"machine; a multicast route is needed (`ip route show {MDNS_GROUP}`); allow UDP "
            f"{MDNS_PORT} in the firewall; or turn mDNS off and list network.peers"
        )
        return result("mdns", "fail", f"cannot {step}: {exc.strerror or exc}", fix)
    return result("mdns", "ok", f"multicast {MDNS_GROUP}:{MDNS_PORT} usable on {where}")
