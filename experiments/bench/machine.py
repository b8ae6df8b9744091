"""The machine a benchmark ran on, and its assumed peak floating-point throughput.

The CPU peak is ``cores x clock x FLOP per cycle``: physical cores and the clock ("cpu MHz") from
/proc/cpuinfo, FLOP per cycle from the vector instruction flags (:data:`FP32_FLOP_PER_CYCLE`). It is
an assumption, printed with its derivation: the reported clock may differ from the sustained one
(turbo, power limits), and some CPUs have one vector FMA unit where the table assumes two.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")

# fp32 FLOP per cycle per core, by the first row whose flags are all present. Two FMA units per core,
# each doing (vector width / 32 bit) lanes x 2 FLOP (multiply and add) per cycle:
# AVX-512: 2 x 16 x 2 = 64; AVX2 + FMA: 2 x 8 x 2 = 32. Without FMA, AVX's separate add and multiply
# units give 8 + 8 = 16, and SSE's 4 + 4 = 8.
FP32_FLOP_PER_CYCLE: tuple[tuple[frozenset[str], int, str], ...] = (
    (frozenset({"avx512f"}), 64, "AVX-512: 2 FMA units x 16 fp32 lanes x 2 FLOP per FMA"),
    (frozenset({"avx2", "fma"}), 32, "AVX2+FMA: 2 FMA units x 8 fp32 lanes x 2 FLOP per FMA"),
    (frozenset({"avx"}), 16, "AVX: 8-lane add + 8-lane multiply"),
    (frozenset({"sse2"}), 8, "SSE2: 4-lane add + 4-lane multiply"),
)


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """The processor blocks of a /proc/cpuinfo text, each as ``{field: value}`` (blank-line separated)."""
    blocks = []
    for chunk in text.strip().split("\n\n"):
        fields = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def flop_per_cycle(flags: set[str] | frozenset[str]) -> tuple[int, str] | None:
    """fp32 FLOP per cycle per core and its reason, from the CPU's flags; None for an unknown CPU."""
    for required, flops, reason in FP32_FLOP_PER_CYCLE:
        if required <= flags:
            return flops, reason
    return None


@dataclass(frozen=True)
class Peak:
    """Assumed peak throughput in GFLOP/s (None: unknown) and how it was derived."""

    gflops: float | None
    derivation: str


def cpu_peak(cores: int, mhz: float, flags: set[str] | frozenset[str]) -> Peak:
    """``cores x clock x FLOP/cycle`` (fp32) in GFLOP/s; unknown when the flags match no known unit."""
    per_cycle = flop_per_cycle(flags)
    if per_cycle is None:
        return Peak(None, "unknown: no known vector unit in the CPU flags; pass --peak-gflops")
    flops, reason = per_cycle
    gflops = cores * mhz * 1e-3 * flops
    return Peak(gflops, f"{cores} cores x {mhz / 1000:.3f} GHz x {flops} FLOP/cycle ({reason}) = {gflops:.1f} GFLOP/s")


@dataclass(frozen=True)
class Machine:
    """What the benchmark ran on."""

    cpu_model: str
    logical_cores: int
    physical_cores: int | None
    mhz: float | None
    flags: frozenset[str]
    torch_threads: int
    torch_version: str
    device: str
    device_name: str | None

    def describe(self) -> str:
        clock = f", {self.mhz:.0f} MHz" if self.mhz else ""
        lines = [
            f"CPU: {self.cpu_model}, {self.logical_cores} logical cores"
            f" ({self.physical_cores or 'unknown'} physical){clock}",
            f"torch {self.torch_version}, {self.torch_threads} threads, device {self.device}"
            + (f" ({self.device_name})" if self.device_name else ""),
        ]
        return "\n".join(lines)


def read_machine(device: torch.device, cpuinfo: Path = CPUINFO) -> Machine:
    """The CPU (from ``cpuinfo`` where readable, else :func:`platform.processor`), torch and ``device``."""
    blocks = parse_cpuinfo(cpuinfo.read_text()) if cpuinfo.is_file() else []
    first = blocks[0] if blocks else {}
    # A (physical id, core id) pair names one physical core; hyper-threads share it and its FMA units.
    cores = {(b.get("physical id"), b["core id"]) for b in blocks if "core id" in b}
    return Machine(
        cpu_model=first.get("model name") or platform.processor() or "unknown",
        logical_cores=os.cpu_count() or 1,
        physical_cores=len(cores) or None,
        mhz=float(first["cpu MHz"]) if "cpu MHz" in first else None,
        flags=frozenset(first.get("flags", "").split()),
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    )


def machine_peak(machine: Machine, override_gflops: float | None = None) -> Peak:
    """The peak to compare against: ``override_gflops`` if given, else the CPU formula on CPU, else unknown."""
    if override_gflops is not None:
        return Peak(override_gflops, f"{override_gflops:.1f} GFLOP/s as given by --peak-gflops")
    if machine.device != "cpu":
        return Peak(None, f"unknown for device {machine.device}: pass --peak-gflops (the card's fp32 peak)")
    if machine.mhz is None:
        return Peak(None, "unknown: no 'cpu MHz' in /proc/cpuinfo; pass --peak-gflops")
    return cpu_peak(machine.physical_cores or machine.logical_cores, machine.mhz, machine.flags)


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none): near 0 on an idle machine."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
