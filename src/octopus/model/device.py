"""What the machine computes fast: the device, and whether bf16 pays here.

    resolve_precision("auto")      # "bf16" on a GPU with bf16 or a CPU with AMX-BF16 / AVX-512-BF16, else "fp32"
    cpu_bf16()                     # does this CPU multiply bf16 natively?
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import torch


class PrecisionError(ValueError):
    """A precision this machine cannot train in."""


@functools.cache
def cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX-BF16 or AVX-512-BF16: ~2-5x fp32's matmul rate); elsewhere
    bf16 autocast is emulated and slower than fp32."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(amx_bf16|avx512_bf16)\b", info) is not None


def resolve_precision(precision: str, field: str = "sft.precision") -> str:
    """`auto` -> bf16 on a GPU that has it or a CPU that computes it natively, else fp32; fp16 needs a GPU."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16" if (torch.cuda.is_bf16_supported() if cuda else cpu_bf16()) else "fp32"
    if precision == "fp16" and not cuda:
        raise PrecisionError(f"{field} fp16 needs a GPU; use bf16, fp32 or auto on a CPU")
    return precision


