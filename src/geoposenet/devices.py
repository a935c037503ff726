"""`--device`, `--threads` and `--amp`: which device a command computes on, and its precision.

`auto` means cuda when a GPU is visible, else mps (Apple), else cpu. Mixed precision runs the
backbone's forward pass under torch.autocast (the pose head and the loss stay float32,
`full_precision`): `--amp bf16` on CUDA or on a CPU with bf16 instructions (oneDNN's AVX-512 BF16
or AMX kernels; refused on a CPU without them, where bf16 would be emulated and slower), `--amp
fp16` on CUDA only, with a gradient scaler. Parsing the names is torch-free (the command line
validates flags before importing torch).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from geoposenet.errors import InputError
from geoposenet.machine import cpu_has_bf16, cpu_model

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_problem(name: str) -> str | None:
    """What is wrong with a `--device` value (None when it is well formed)."""
    if DEVICE_PATTERN.fullmatch(name):
        return None
    return f"expected auto, cpu, cuda[:N] or mps, got {name!r}"


def pick_device(name: str, cuda: bool, mps: bool, local_rank: int | None = None) -> str:
    """The device a `--device` value names, given what is available (`cuda`, `mps`): a pure
    function of its arguments. In a distributed run (`local_rank` given) CUDA means
    cuda:LOCAL_RANK, one GPU per process. InputError when the device is not available."""
    if (problem := device_problem(name)) is not None:
        raise InputError(f"--device {problem}")
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name.startswith("cuda") and not cuda:
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if name == "mps" and not mps:
        raise InputError("--device mps: Apple's MPS backend is not available on this machine")
    if local_rank is None or not name.startswith("cuda"):
        return name
    if name != "cuda":
        raise InputError(
            f"--device {name}: in a distributed run every process uses cuda:LOCAL_RANK; "
            "pass --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    return f"cuda:{local_rank}"


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device for `--device` on this machine (see `pick_device`)."""
    import torch

    mps = torch.backends.mps.is_available()
    device = torch.device(pick_device(name, torch.cuda.is_available(), mps, local_rank))
    if device.type == "cuda" and local_rank is not None and local_rank >= torch.cuda.device_count():
        raise InputError(
            f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
            "use at most one process per GPU (--nproc_per_node)"
        )
    return device


def check_amp(amp: str, device_type: str) -> None:
    """InputError unless `--amp` fits the device: none anywhere, bf16 on CUDA or a CPU with
    bf16 instructions (`machine.cpu_has_bf16`), fp16 on CUDA only."""
    if amp not in ("none", "bf16", "fp16"):
        raise InputError(f"--amp must be one of none, bf16, fp16, got {amp!r}")
    if amp == "none" or device_type == "cuda":
        return
    if amp == "fp16":
        raise InputError(
            f"--amp fp16: float16 mixed precision needs a CUDA device; this run is on "
            f"{device_type} (use --amp none, or --amp bf16 on a CPU with bf16 instructions)"
        )
    if device_type != "cpu":
        raise InputError(
            f"--amp bf16: mixed precision runs on CUDA or a CPU with bf16 instructions; this "
            f"run is on {device_type} (use --amp none)"
        )
    if not cpu_has_bf16():
        raise InputError(
            f"--amp bf16: this CPU ({cpu_model()}) has no bf16 instructions (avx512_bf16, "
            "amx_bf16 or Arm bf16), so bf16 would be emulated and slower than float32; use "
            "--amp none (or a CUDA device)"
        )


def autocast(amp: str, device: torch.device) -> AbstractContextManager[object]:
    """The forward pass's precision context: autocast to bf16/fp16, or nothing for `none`."""
    import torch

    if amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def full_precision(device_type: str) -> AbstractContextManager[object]:
    """Inside an autocast region, float32 again (autocast off) for the block; elsewhere
    nothing at all, so float32 training is untouched."""
    import torch

    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return nullcontext()


def set_threads(threads: int) -> None:
    """`--threads N`: torch's intra-op threads (0 leaves torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
