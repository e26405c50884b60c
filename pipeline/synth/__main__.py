"""python -m pipeline.synth params.yaml : generate the synthetic facade dataset."""

import sys

from pipeline.synth.dataset import generate
from pipeline.train.common import load_params

p = load_params(sys.argv[1], "generate")
generate(p["out"], {"train": p["train"], "val": p["val"], "test": p["test"]}, p["size"], p["views_per_facade"],
         p["crop_size"], p["seed"])
