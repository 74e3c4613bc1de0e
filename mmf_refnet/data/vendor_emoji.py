"""Regenerate ``mmf_refnet/data/emoji_assets/`` from the npm package.

Usage (needs the unpacked package, e.g. from
``npm install --ignore-scripts emoji-datasource-google@16.0.0``)::

    python -m mmf_refnet.data.vendor_emoji \
        --package-dir node_modules/emoji-datasource-google

Keeps the base entries of ``emoji.json`` (no ``skin_variations``) that have a
Google image and are not in the "Component" category, orders them by the
package's ``sort_order`` and packs their 64 px RGBA PNGs losslessly into one
sprite sheet. One atlas (~6 MB) beats 1.9k loose PNGs (~6 MB plus per-file
overhead in git/wheels) and decodes in one go at run time.

Names are lower-cased. The few entries whose names collide (``MAN IN TUXEDO``
is both U+1F935 and its ZWJ sequence) are renamed to their first short name
with spaces (``person in tuxedo``), so every name is unique -- the "fit"
task relies on captions being unique.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

from PIL import Image

from mmf_refnet.data.emoji import ASSETS_DIR, ATLAS_FILE, INDEX_FILE, INDEX_FORMAT, TILE_SIZE

PACKAGE_NAME = "emoji-datasource-google"
EXPECTED_VERSION = "16.0.0"
COLUMNS = 48
IMAGE_SUBDIR = Path("img") / "google" / "64"

NOTICE_TEXT = """\
Emoji images in this directory (atlas.png)
==========================================

The 64x64 emoji images packed into atlas.png are the Noto Emoji images by
Google, licensed under the Apache License, Version 2.0 (full text in
LICENSE-Apache-2.0.txt next to this file; also
https://www.apache.org/licenses/LICENSE-2.0 and
https://github.com/googlefonts/noto-emoji/blob/main/LICENSE).

They were taken from the npm package {package} {version}
(https://github.com/iamcal/emoji-data), whose README states:
"Android/Google/Noto images, are available under the Apache License 2.0".
Modification: the individual PNGs were packed, unchanged, into one sprite
sheet by mmf_refnet/data/vendor_emoji.py.

index.json is derived from the package's emoji.json (names, short names,
categories, code points), which is under the MIT License:

{mit}
"""


def _read_package(package_dir: Path) -> tuple:
    """(version, base entries to keep) from an unpacked npm package dir."""
    emoji_json = package_dir / "emoji.json"
    if not emoji_json.is_file():
        raise FileNotFoundError(f"{emoji_json} not found: --package-dir must point at the unpacked {PACKAGE_NAME} package")
    version = json.loads((package_dir / "package.json").read_text(encoding="utf-8")).get("version", "?")
    entries = json.loads(emoji_json.read_text(encoding="utf-8"))
    keep = [e for e in entries if e.get("has_img_google") and e.get("category") != "Component"]
    keep.sort(key=lambda e: (e["sort_order"], e["unified"]))
    return version, keep


def unique_names(entries: List[dict]) -> List[str]:
    """Lower-cased names, colliding ones replaced by their first short name."""
    names = [e["name"].lower() for e in entries]
    counts = Counter(names)
    names = [
        e["short_names"][0].replace("_", " ").lower() if counts[n] > 1 else n
        for n, e in zip(names, entries)
    ]
    duplicates = [n for n, c in Counter(names).items() if c > 1]
    if duplicates:
        raise ValueError(f"emoji names still not unique after renaming: {duplicates[:10]}")
    return names


def build_assets(package_dir: Path, out_dir: Path, columns: int = COLUMNS) -> dict:
    """Write atlas.png, index.json and NOTICE into ``out_dir``; return a summary."""
    package_dir, out_dir = Path(package_dir), Path(out_dir)
    version, entries = _read_package(package_dir)
    if version != EXPECTED_VERSION:
        print(f"warning: {PACKAGE_NAME} {version} (expected {EXPECTED_VERSION}); ids may differ", file=sys.stderr)
    names = unique_names(entries)
    rows = -(-len(entries) // columns)
    atlas = Image.new("RGBA", (columns * TILE_SIZE, rows * TILE_SIZE), (0, 0, 0, 0))
    index = []
    for i, (entry, name) in enumerate(zip(entries, names)):
        x, y = (i % columns) * TILE_SIZE, (i // columns) * TILE_SIZE
        with Image.open(package_dir / IMAGE_SUBDIR / entry["image"]) as tile:
            tile = tile.convert("RGBA")
        if tile.size != (TILE_SIZE, TILE_SIZE):
            raise ValueError(f"{entry['image']}: expected {TILE_SIZE}x{TILE_SIZE}, got {tile.size}")
        atlas.paste(tile, (x, y))
        index.append({
            "id": i, "name": name, "short_names": entry["short_names"], "category": entry["category"],
            "subcategory": entry["subcategory"], "unified": entry["unified"], "x": x, "y": y,
        })
    out_dir.mkdir(parents=True, exist_ok=True)
    atlas.save(out_dir / ATLAS_FILE, format="PNG", optimize=True)
    header = {
        "format": INDEX_FORMAT, "source": {"package": PACKAGE_NAME, "version": version, "images": "img/google/64"},
        "atlas": ATLAS_FILE, "tile_size": TILE_SIZE, "columns": columns, "count": len(index),
        "categories": sorted({e["category"] for e in index}),
    }
    # One emoji per line: small, diff-friendly and deterministic.
    lines = ",\n".join(json.dumps(e, ensure_ascii=False, sort_keys=True) for e in index)
    head = json.dumps(header, ensure_ascii=False, sort_keys=True)[:-1]
    (out_dir / INDEX_FILE).write_text(f'{head}, "emojis": [\n{lines}\n]}}\n', encoding="utf-8")
    mit = (package_dir / "LICENSE").read_text(encoding="utf-8").strip()
    (out_dir / "NOTICE").write_text(NOTICE_TEXT.format(package=PACKAGE_NAME, version=version, mit=mit), encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    return {"count": len(index), "version": version, "out_dir": str(out_dir), "bytes": sizes}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmf_refnet.data.vendor_emoji", description=__doc__.split("\n")[0])
    parser.add_argument("--package-dir", required=True, type=Path, help=f"unpacked {PACKAGE_NAME} package")
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help="output dir (default: the vendored emoji_assets/)")
    args = parser.parse_args(argv)
    try:
        summary = build_assets(args.package_dir, args.out)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    total = sum(summary["bytes"].values())
    print(f"wrote {summary['count']} emojis ({PACKAGE_NAME} {summary['version']}) to {summary['out_dir']}: "
          f"{total / 1e6:.2f} MB ({', '.join(f'{k} {v}' for k, v in summary['bytes'].items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
