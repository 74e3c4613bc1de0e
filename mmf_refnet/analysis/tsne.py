"""t-SNE of fused embeddings and refiner outputs (paper Fig. 5), with sklearn.

One panel per checkpoint (e.g. vilbert-like baseline / refnet / refnet_ms): the
fused embeddings coloured by class, and the refiner outputs of both modalities
(marker = modality) coloured by class, each embedded by TSNE (perplexity 100 by
default, as in the paper; capped below the number of points).
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

MARKERS = {"text": "^", "image": "o"}


def class_ids(labels: Optional[np.ndarray], count: int) -> np.ndarray:
    """Integer class per sample (argmax of multi-hot; first label for multilabel); zeros if unknown."""
    if labels is None:
        return np.zeros(count, dtype=int)
    return labels.argmax(axis=1).astype(int) if labels.ndim == 2 else labels.astype(int)


def embed(points: np.ndarray, perplexity: float = 100.0, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    if len(points) < 5:
        raise ValueError(f"t-SNE needs at least 5 samples, got {len(points)}")
    perplexity = min(float(perplexity), (len(points) - 1) / 3.0)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def tsne_panels(collected: Dict[str, np.ndarray], perplexity: float = 100.0, seed: int = 0) -> Dict[str, np.ndarray]:
    """2-D coordinates: ``fused`` (n, 2) and ``refined`` (2n, 2: text rows then image rows)."""
    refined = np.concatenate([collected["refined_text"], collected["refined_image"]])
    return {"fused": embed(collected["fused"], perplexity, seed), "refined": embed(refined, perplexity, seed)}


def plot_tsne(runs: Sequence[Dict[str, np.ndarray]], names: Sequence[str], path: str, perplexity: float = 100.0,
              seed: int = 0, class_names: Optional[List[str]] = None) -> List[Dict[str, np.ndarray]]:
    """Write a PNG with 2 rows (fused, refiner outputs) × one column per run; return the coordinates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coordinates = [tsne_panels(run, perplexity, seed) for run in runs]
    figure, axes = plt.subplots(2, len(runs), figsize=(4.5 * len(runs), 8.5), squeeze=False)
    for column, (run, coords, name) in enumerate(zip(runs, coordinates, names)):
        classes = class_ids(run.get("labels"), len(run["fused"]))
        _scatter(axes[0][column], coords["fused"], classes, "o", class_names)
        axes[0][column].set_title(f"{name}: fused embeddings")
        count = len(run["fused"])
        for index, modality in enumerate(("text", "image")):
            rows = coords["refined"][index * count:(index + 1) * count]
            _scatter(axes[1][column], rows, classes, MARKERS[modality], class_names, suffix=f" ({modality})")
        axes[1][column].set_title(f"{name}: refiner outputs (marker = modality)")
    axes[0][0].legend(loc="best", fontsize=7)
    axes[1][0].legend(loc="best", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return coordinates


def _scatter(axis, points, classes, marker, class_names, suffix=""):
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab10")
    for value in np.unique(classes):
        chosen = classes == value
        label = class_names[value] if class_names and value < len(class_names) else f"class {value}"
        axis.scatter(points[chosen, 0], points[chosen, 1], s=8, marker=marker, color=palette(value % 10),
                     label=label + suffix, alpha=0.7)
    axis.set_xticks([])
    axis.set_yticks([])
