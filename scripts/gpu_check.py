#!/usr/bin/env python3
"""Hand-run check of the device probes on a machine with an NVIDIA GPU.

    python scripts/gpu_check.py [--mib 1024] [--device 0]

Not part of the test suite (CI has no GPU).  It prints one JSON object:

``devices``
    ``probe_devices()`` — what this node would publish (``DeviceInfo.to_dict()``).
``allocation``
    Allocates ``--mib`` MiB on ``cuda:<device>`` and reads free memory before and
    after through both torch (``torch.cuda.mem_get_info``) and NVML
    (``probe_nvml``), then frees it again.  The "before" readings are taken after
    the CUDA context exists, so the context's own memory does not count.
``checks``
    ``probe_found_cuda``     the probe chain chose NVML and found the device
    ``torch_saw_allocation`` torch's free memory dropped by at least the request
    ``nvml_saw_allocation``  NVML's free memory dropped by at least the request
    ``totals_match``         NVML's and CUDA's total memory agree (informational:
                             some drivers keep a reserve out of one of them)

Exit status: 0 when every check but ``totals_match`` passed, 1 when one failed,
2 when there is no CUDA device to test.  Other processes allocating on the same GPU
while this runs can fail the NVML check; run it on an otherwise idle GPU.

``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set before torch loads so that the CUDA
ordinal ``--device`` names the same GPU as the NVML index.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vramancer_node.devices import DeviceProbeError, probe_devices, probe_nvml

MIB = 1024 * 1024
ALLOCATION_MIB_DEFAULT = 1024
EXIT_OK, EXIT_FAILED, EXIT_NO_CUDA = 0, 1, 2


def _nvml_free_bytes(index: int) -> int | None:
    try:
        devices = probe_nvml()
    except DeviceProbeError:
        return None
    matching = [d for d in devices if d.index == index]
    return matching[0].memory_free_bytes if matching else None


def _allocation(torch: Any, index: int, requested_bytes: int) -> dict[str, Any]:
    device = torch.device("cuda", index)
    free_before, total = torch.cuda.mem_get_info(device)  # creates the context first
    nvml_before = _nvml_free_bytes(index)
    tensor = torch.empty(requested_bytes, dtype=torch.uint8, device=device)
    tensor.fill_(1)
    torch.cuda.synchronize(device)
    free_after, _ = torch.cuda.mem_get_info(device)
    nvml_after = _nvml_free_bytes(index)
    del tensor
    torch.cuda.empty_cache()
    free_released, _ = torch.cuda.mem_get_info(device)
    nvml_delta = None if nvml_before is None or nvml_after is None else nvml_before - nvml_after
    return {
        "device": index,
        "name": torch.cuda.get_device_name(device),
        "requested_bytes": requested_bytes,
        "torch_total_bytes": total,
        "torch_free_before_bytes": free_before,
        "torch_free_after_bytes": free_after,
        "torch_free_after_release_bytes": free_released,
        "torch_delta_bytes": free_before - free_after,
        "nvml_free_before_bytes": nvml_before,
        "nvml_free_after_bytes": nvml_after,
        "nvml_delta_bytes": nvml_delta,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=ALLOCATION_MIB_DEFAULT, help="MiB to allocate")
    parser.add_argument("--device", type=int, default=0, help="CUDA ordinal (= NVML index)")
    args = parser.parse_args(argv)
    if args.mib <= 0 or args.device < 0:
        parser.error("--mib must be positive and --device non-negative")
    devices = probe_devices()
    report: dict[str, Any] = {"devices": [d.to_dict() for d in devices]}
    import torch  # after CUDA_DEVICE_ORDER is set; slow, so only once the probe ran

    if not torch.cuda.is_available() or args.device >= torch.cuda.device_count():
        report["allocation"] = {"error": f"no CUDA device {args.device} visible to torch"}
        print(json.dumps(report, indent=2))
        return EXIT_NO_CUDA
    allocation = _allocation(torch, args.device, args.mib * MIB)
    probed = [d for d in devices if d.kind == "cuda" and d.index == args.device and d.usable]
    requested = allocation["requested_bytes"]
    checks = {
        "probe_found_cuda": bool(probed),
        "torch_saw_allocation": allocation["torch_delta_bytes"] >= requested,
        "nvml_saw_allocation": (allocation["nvml_delta_bytes"] or 0) >= requested,
        "totals_match": bool(probed)
        and probed[0].memory_total_bytes == allocation["torch_total_bytes"],
    }
    report["allocation"] = allocation
    report["checks"] = checks
    print(json.dumps(report, indent=2))
    required = [ok for name, ok in checks.items() if name != "totals_match"]
    return EXIT_OK if all(required) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
