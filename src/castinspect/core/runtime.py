"""CPU set-up that matters on small machines: allocator, bf16/AMX detection, seeds, threads."""

from __future__ import annotations

import ctypes
import platform
import random
from functools import cache

import numpy as np
import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@cache
def tune_allocator() -> bool:
    """Stop glibc from returning training buffers to the OS after every step.

    With its defaults, glibc maps each large activation buffer fresh and unmaps it on free, so
    every step pays for page faults again (docs: development, CPU set-up). Only applied
    where the C library is glibc; elsewhere this is a no-op that returns False.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False


@cache
def cpu_has_amx() -> bool:
    """True where the CPU runs bf16 matrix tiles (Intel AMX): there bf16 autocast pays off."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        try:
            return bool(probe())
        except RuntimeError:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


def use_bf16(setting: str) -> bool:
    """Resolve a config's ``bf16`` setting ("auto", "on", "off")."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    if setting != "auto":
        raise ValueError(f"bf16 must be auto, on or off, not {setting!r}")
    return cpu_has_amx()


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def training_device(setting: str) -> torch.device:
    """Resolve a config's ``device`` setting ("auto", "cpu", "cuda")."""
    if setting not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {setting!r}")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: PyTorch sees no CUDA device here")
    return torch.device("cuda" if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()) else "cpu")


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)
