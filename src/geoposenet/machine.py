"""Where a figure was measured: one line naming the machine, stated beside every timing or
result the demo and the benchmarks print (numbers differ between machines)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# CPU features that change how fast torch runs here (bf16/AMX kernels of oneDNN).
_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's best guess."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); None where
    there is no such file (not Linux)."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return None
    for line in info.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_features() -> list[str]:
    """Which of _FEATURES the CPU reports (Linux), in that order."""
    flags = cpu_flags() or set()
    return [name for name in _FEATURES if name in flags]


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 arithmetic instructions (x86 avx512_bf16 or amx_bf16, Arm bf16),
    which oneDNN uses for bf16 autocast; without them bf16 is emulated and slower than float32.
    Where /proc/cpuinfo is missing, oneDNN's own answer."""
    flags = cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def describe() -> str:
    """e.g. '2 cores, Intel(R) Xeon(R) Processor (avx2 avx512f amx_bf16), torch 2.14.1, CPU'."""
    import torch

    features = " ".join(cpu_features())
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} cores, {cpu_model()}"
        + (f" ({features})" if features else "")
        + f", torch {torch.__version__}, {device}"
    )
