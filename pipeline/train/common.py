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
