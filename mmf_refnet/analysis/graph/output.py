"""Results of the synthetic experiment as a table, deterministic JSON and files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmf_refnet.analysis.graph.plots import plot_synthetic
from mmf_refnet.analysis.graph.recovery import METRIC_KEYS

_VOLATILE_KEYS = ("seconds",)  # left out of JSON so that files are reproducible byte for byte


def to_jsonable(value: Any) -> Any:
    """numpy → lists/Python scalars, NaN/inf → None (valid JSON)."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(obj: Any, path: str | Path) -> Path:
    """Deterministic JSON (sorted keys, volatile keys dropped)."""
    def strip(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {key: strip(value) for key, value in item.items() if key not in _VOLATILE_KEYS}
        if isinstance(item, list):
            return [strip(value) for value in item]
        return item

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strip(to_jsonable(obj)), indent=2, sort_keys=True) + "\n")
    return path


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of the synthetic results (one row per run)."""
    head = ["m", "k", "noise", "loss", "refiner", "down", *METRIC_KEYS, "iters", "sec"]
    rows = [head]
    for r in results:
        rows.append([str(r["m"]), str(r["k"]), f"{r['noise']:g}", r["loss"], "on" if r["refiner"] else "off",
                     str(r["downstream_dim"]), *(f"{r[key]:.2e}" if math.isfinite(r[key]) else "n/a" for key in METRIC_KEYS),
                     f"{r['iterations']}+{r.get('newton_iterations', 0)}", f"{r['seconds']:.2f}"])
    widths = [max(len(row[col]) for row in rows) for col in range(len(head))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def synthetic_name(result: Mapping[str, Any]) -> str:
    """File stem encoding the run's parameters."""
    tag = "" if result["refiner"] else "_norefiner"
    return (f"graph_m{result['m']}_k{result['k']}_noise{result['noise']:g}_{result['loss']}"
            f"_down{result['downstream_dim']}{tag}")


def save_synthetic(results: Sequence[Mapping[str, Any]], out_dir: str | Path, name: str = "graph_synthetic") -> dict[str, Any]:
    """One heatmap PNG per run plus ``{name}.json`` (metrics and matrices of
    every run, no timings: reproducible); returns the written paths."""
    out_dir = Path(out_dir)
    pngs = [plot_synthetic(result, out_dir / f"{synthetic_name(result)}.png") for result in results]
    json_path = write_json({"results": list(results)}, out_dir / f"{name}.json")
    return {"png": pngs, "json": json_path}
