"""The compute estimate every device record carries: peak FP32 TFLOP/s.

Theory of operation
-------------------
Placement needs a number to rank devices by, not a benchmark.  The estimate is the
datasheet peak of the plain FP32 pipeline::

    compute_tflops = cuda_cores * FP32_FLOPS_PER_CORE_PER_CYCLE * clock_hz / 1e12

with ``FP32_FLOPS_PER_CORE_PER_CYCLE = 2`` (one fused multiply-add per core per
cycle) and ``clock_hz`` the *maximum* SM clock, so the figure does not move with
DVFS (an idle GPU clocks down; a changing estimate would only cause gossip churn).
For example an H100 SXM (132 SMs x 128 cores, 1980 MHz) gives 66.9 TFLOP/s, the
datasheet's FP32 figure.  Tensor-core throughput is many times higher and its ratio
to FP32 differs per generation; the estimate ranks devices, it does not predict
decode speed.

When the core count or the clock is unknown the estimate is ``None``: unknown
values stay absent, never invented.
"""

from __future__ import annotations

FP32_FLOPS_PER_CORE_PER_CYCLE = 2
"""One fused multiply-add (two floating-point operations) per CUDA core per cycle."""

FLOPS_PER_TFLOPS = 1e12
TFLOPS_DECIMALS = 3
"""Rounding of published estimates: stable values, no float noise in the gossip."""

CUDA_CORES_PER_SM: dict[tuple[int, int], int] = {
    # Compute capability -> FP32 CUDA cores per streaming multiprocessor, as in
    # _ConvertSMVer2Cores of the CUDA samples (helper_cuda.h).  Append only.
    (3, 0): 192,  # Kepler
    (3, 2): 192,
    (3, 5): 192,
    (3, 7): 192,
    (5, 0): 128,  # Maxwell
    (5, 2): 128,
    (5, 3): 128,
    (6, 0): 64,  # Pascal GP100
    (6, 1): 128,
    (6, 2): 128,
    (7, 0): 64,  # Volta
    (7, 2): 64,
    (7, 5): 64,  # Turing
    (8, 0): 64,  # Ampere A100
    (8, 6): 128,
    (8, 7): 128,  # Jetson Orin
    (8, 9): 128,  # Ada
    (9, 0): 128,  # Hopper
    (10, 0): 128,  # Blackwell
    (10, 1): 128,
    (10, 3): 128,
    (11, 0): 128,
    (12, 0): 128,
    (12, 1): 128,
}


def cuda_cores_from_sms(sm_count: int | None, capability: tuple[int, int] | None) -> int | None:
    """``sm_count`` times the cores per SM of ``capability``; ``None`` if either is unknown."""
    if sm_count is None or capability is None or sm_count <= 0:
        return None
    per_sm = CUDA_CORES_PER_SM.get(capability)
    return None if per_sm is None else sm_count * per_sm


def peak_fp32_tflops(cuda_cores: int | None, clock_hz: float | None) -> float | None:
    """The formula of the module docstring; ``None`` unless both inputs are positive."""
    if cuda_cores is None or clock_hz is None or cuda_cores <= 0 or clock_hz <= 0:
        return None
    flops = cuda_cores * FP32_FLOPS_PER_CORE_PER_CYCLE * clock_hz
    return round(flops / FLOPS_PER_TFLOPS, TFLOPS_DECIMALS)
