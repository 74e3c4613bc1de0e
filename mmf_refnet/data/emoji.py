"""Read access to the vendored emoji assets (``emoji_assets/``).

The assets are one RGBA sprite sheet (``atlas.png``, 64 px tiles) plus
``index.json`` describing every tile. They are produced by
``python -m mmf_refnet.data.vendor_emoji`` from the npm package
``emoji-datasource-google`` 16.0.0 (images: Noto Emoji, Apache-2.0); nothing
here needs npm or the network.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from PIL import Image

ASSETS_DIR = Path(__file__).resolve().parent / "emoji_assets"
ATLAS_FILE = "atlas.png"
INDEX_FILE = "index.json"
TILE_SIZE = 64
INDEX_FORMAT = 1


@dataclass(frozen=True)
class EmojiRecord:
    """One emoji: ``id`` is its stable integer id (position in the index)."""

    id: int
    name: str
    short_names: Tuple[str, ...]
    category: str
    subcategory: str
    unified: str
    x: int
    y: int


def _check_assets(assets_dir: Path) -> None:
    for name in (ATLAS_FILE, INDEX_FILE):
        if not (assets_dir / name).is_file():
            raise FileNotFoundError(
                f"emoji asset '{assets_dir / name}' is missing; regenerate it with "
                "`python -m mmf_refnet.data.vendor_emoji --package-dir "
                "<node_modules/emoji-datasource-google>`"
            )


@lru_cache(maxsize=4)
def _load_index(assets_dir: Path) -> Tuple[dict, Tuple[EmojiRecord, ...]]:
    _check_assets(assets_dir)
    meta = json.loads((assets_dir / INDEX_FILE).read_text(encoding="utf-8"))
    if meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{assets_dir / INDEX_FILE}: unsupported index format {meta.get('format')!r}")
    records = tuple(
        EmojiRecord(
            id=int(e["id"]),
            name=e["name"],
            short_names=tuple(e["short_names"]),
            category=e["category"],
            subcategory=e["subcategory"],
            unified=e["unified"],
            x=int(e["x"]),
            y=int(e["y"]),
        )
        for e in meta["emojis"]
    )
    return {k: v for k, v in meta.items() if k != "emojis"}, records


def load_emoji_index(assets_dir: Optional[Path] = None) -> List[EmojiRecord]:
    """All vendored emojis, ordered by id."""
    return list(_load_index(Path(assets_dir or ASSETS_DIR))[1])


def categories(assets_dir: Optional[Path] = None) -> List[str]:
    """The category names in their fixed (sorted) class order."""
    return sorted({r.category for r in load_emoji_index(assets_dir)})


def load_atlas(assets_dir: Optional[Path] = None) -> Image.Image:
    """The decoded RGBA sprite sheet (about 3k x 2.5k px)."""
    assets_dir = Path(assets_dir or ASSETS_DIR)
    _check_assets(assets_dir)
    with Image.open(assets_dir / ATLAS_FILE) as atlas:
        return atlas.convert("RGBA")


def crop_emoji(atlas: Image.Image, record: EmojiRecord) -> Image.Image:
    """The 64x64 RGBA tile of ``record`` (a copy, safe to modify)."""
    return atlas.crop((record.x, record.y, record.x + TILE_SIZE, record.y + TILE_SIZE))


def emoji_images(records: Iterable[EmojiRecord], atlas: Optional[Image.Image] = None) -> Dict[int, Image.Image]:
    """``{id: RGBA tile}`` for ``records`` (decodes the atlas once)."""
    atlas = atlas if atlas is not None else load_atlas()
    return {r.id: crop_emoji(atlas, r) for r in records}
