"""Heatmaps of the graph analysis as reproducible PNGs (matplotlib's object API, imported when drawing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_PANEL_INCHES = (3.4, 3.0)

_DPI = 100


def save_heatmaps(panels: Sequence[tuple], path: str | Path, title: str = "", ncols: int = 3,
                  cmap: str = "RdBu_r") -> Path:
    """Grid of annotated heatmaps as a reproducible PNG.

    ``panels``: ``(title, matrix)`` or ``(title, matrix, (vmin, vmax))``; the
    default colour range is symmetric around 0; all-NaN panels show "n/a".
    Uses matplotlib's object API with the Agg canvas (no pyplot, no global
    backend switch), a fixed size (no tight bbox) and no Software/date metadata,
    so equal inputs give byte-identical files.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(_PANEL_INCHES[0] * ncols, _PANEL_INCHES[1] * nrows + (0.4 if title else 0.0)), dpi=_DPI)
    FigureCanvasAgg(fig)
    for index, (name, matrix, *vrange) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        _draw_panel(fig, ax, name, np.asarray(matrix, dtype=np.float64), vrange[0] if vrange else None, cmap)
    for index in range(len(panels), nrows * ncols):
        fig.add_subplot(nrows, ncols, index + 1).set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _draw_panel(fig: Any, ax: Any, name: str, matrix: np.ndarray, vrange: tuple[float, float] | None, cmap: str) -> None:
    """One heatmap with per-cell values (for matrices up to 10 × 10)."""
    ax.set_title(name, fontsize=9)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if not np.isfinite(matrix).any():
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    if vrange is None:
        bound = float(np.nanmax(np.abs(matrix))) or 1.0
        vrange = (-bound, bound)
    image = ax.imshow(matrix, cmap=cmap, vmin=vrange[0], vmax=vrange[1], interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.tick_params(labelsize=7)
    if max(matrix.shape) <= 10:
        dark = 0.6 * max(abs(vrange[0]), abs(vrange[1]))
        spec = ".0e" if np.nanmax(np.abs(matrix)) < 5e-3 else ".2f"  # tiny differences: show their size
        for (row, col), value in np.ndenumerate(matrix):
            colour = "white" if abs(value) > dark else "black"
            ax.text(col, row, format(value, spec), ha="center", va="center", fontsize=6, color=colour)


def plot_synthetic(result: Mapping[str, Any], path: str | Path) -> Path:
    """Heatmaps for one synthetic run: recovered Γ̃^{-1} next to W A and their
    difference; Γ̃ W* (≈ I); recovered graph Â next to A."""
    mats = result["matrices"]
    unit = (-1.0, 1.0)
    panels = [("recovered Γ̃⁻¹ (Γ̃: gain-normalised Γ)", mats["Gamma_inv"]), ("true W A", mats["WA"]),
              ("Γ̃⁻¹ − W A", mats["Gamma_inv"] - mats["WA"]), ("Γ̃ W*  (should be I)", mats["GW"], unit),
              ("recovered graph Â = Ŵ⁻¹ Γ̃⁻¹", mats["A_rec"], unit), ("true graph A", mats["A"], unit)]
    title = (f"m={result['m']} k={result['k']} noise={result['noise']:g} loss={result['loss']} "
             f"refiner={'on' if result['refiner'] else 'off'} downstream={result['downstream_dim']}  "
             f"|Γ̃W*−I|={result['gw_err']:.1e}  |Γ̃⁻¹−WA|={result['adj_err_true']:.1e}")
    return save_heatmaps(panels, path, title=title)


def plot_modality_map(result: Mapping[str, Any], path: str | Path) -> Path:
    """Annotated heatmap of ``modality_map``'s M (rows: decoded-from modality i,
    columns: explained modality j), R² range [0, 1]; reproducible PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names, matrix = result["modalities"], np.asarray(result["matrix"])
    size = max(3.2, 0.9 * len(names) + 2.2)
    fig = Figure(figsize=(size + 0.8, size), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="R²")
    ax.set_xticks(range(len(names)), labels=names)
    ax.set_yticks(range(len(names)), labels=[f"{name} (r={result['rank'][name]})" for name in names])
    ax.set_xlabel("explained modality j")
    ax.set_ylabel("F_emb part decoding modality i")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.5 else "black")
    ax.set_title("modality map M[i, j]", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path
