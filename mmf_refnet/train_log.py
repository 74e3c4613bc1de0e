"""Reading the metrics MMF writes to ``<save_dir>/train.log`` (rc10's progress lines)."""

import os
import re
from typing import Dict

_VALUE = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?)"


def last_metrics(save_dir: str, split: str) -> Dict[str, float]:
    """``{name: value}`` of the last progress line reporting ``split`` (``train``, ``val``, ``test``):
    its metrics and losses, e.g. ``{"roc_auc": 0.91, "refiner_text": 0.02}``; ``{}`` when none.

    For ``val`` in a run with early stopping, the last line is the best checkpoint's (rc10 logs
    it again at the end).
    """
    path = os.path.join(save_dir, "train.log")
    with open(path) as handle:
        lines = [line for line in handle if "progress:" in line and f"{split}/" in line]
    if not lines:
        return {}
    return {name: float(value) for name, value in re.findall(rf"{split}/\w+/(\w+): {_VALUE}", lines[-1])}
