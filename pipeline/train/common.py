"""Small helpers every trainer shares."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
import yaml


def setup(seed: int) -> torch.device:
    torch.set_num_threads(int(os.environ.get("INSPECTFLOW_THREADS", os.cpu_count() or 1)))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_params(path: str, section: str) -> dict:
    with open(path) as fh:
        params = yaml.safe_load(fh)
    return params[section]


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, device: torch.device | str) -> str:
    """`precision: bf16` trains under bfloat16 autocast: about 1.5-2x faster steps on a CPU with native
    bf16 (AVX512-BF16 or AMX) or a recent GPU, but emulated, and slower, elsewhere, so it is refused there."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {list(PRECISIONS)}")
    device = torch.device(device)
    if precision == "bf16":
        native = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                  else torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if not native:
            raise ValueError(f"precision: bf16 is emulated on this {device.type}, which makes training slower, "
                             "not faster; set precision: fp32")
    return precision


def autocast(precision: str, device: torch.device | str):
    # a device or its name ("cpu"), as the trainers' other helpers take either
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def channels_last(t):
    """A model or a batch in NHWC layout. oneDNN then skips its layout reorders around every convolution:
    the same arithmetic, 1.4-1.8x faster training steps on 2 CPU cores (benchmarks/train_speed.py)."""
    if isinstance(t, torch.nn.Module):
        return t.to(memory_format=torch.channels_last)
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
