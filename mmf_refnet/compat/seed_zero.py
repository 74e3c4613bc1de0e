"""rc10's ``mmf.utils.env.set_seed`` seeds only ``if seed:``, so ``training.seed=0``
seeds nothing: such a run is not reproducible while ``mmf_run`` prints "Using
seed 0". Now 0 seeds torch, numpy and ``random`` like any other number; -1 still
draws a random seed and null still seeds nothing (rc10's meanings)."""

import random
import sys

import numpy as np
import torch


def apply() -> None:
    from mmf.utils import env

    original = env.set_seed
    if hasattr(original, "__wrapped__"):
        return

    def set_seed(seed):
        if seed is not None and not isinstance(seed, bool) and seed == 0:
            np.random.seed(0)
            torch.manual_seed(0)
            random.seed(0)
            return 0
        return original(seed)

    set_seed.__wrapped__ = original
    env.set_seed = set_seed
    run = sys.modules.get("mmf_cli.run")  # bound its own name at import
    if run is not None and getattr(run, "set_seed", None) is original:
        run.set_seed = set_seed
