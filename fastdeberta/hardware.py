"""What the machine can do fast: native bfloat16 detection, with the reason when it cannot.

bf16 matmuls are fast only where the processor has them in hardware (CPU: AVX-512 BF16 or AMX;
GPU: compute capability 8.0+). Elsewhere PyTorch emulates them and a bf16 forward runs several times
slower than fp32 (measured 0.15x on an AVX2-only Zen 3), so "auto" precision falls back to fp32.
"""

from __future__ import annotations

import functools
import platform

import torch

__all__ = ["bf16_support", "cpu_flags"]

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where it cannot be read, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_support(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """(native, reason): whether bf16 compute is native on ``device``, and a sentence saying why."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} supports bf16 natively"
        return False, "this GPU has no native bf16 (compute capability below 8.0)"
    if device.type != "cpu":
        return False, f"native bf16 is not detected on device type {device.type!r}"
    flags = cpu_flags()
    found = [f for f in _NATIVE_BF16_FLAGS if f in flags]
    if found:
        return True, f"the CPU has {' and '.join(found)}"
    if not flags:
        return False, f"CPU features could not be read on {platform.system()}; assuming no native bf16"
    return False, "the CPU has no native bf16 (no avx512_bf16 / amx_bf16): bf16 would be emulated and slow"
