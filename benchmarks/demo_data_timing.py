"""Time the emoji memes demo-data preparation on this machine.

    python benchmarks/demo_data_timing.py [--data-dir DIR] [--max-emojis N] [--batch-size 4]

Steps timed (fresh temporary data dir unless --data-dir is given):
  1. test subset: 40 emojis, batch 8 (what tests/test_emoji_data.py does)
  2. full "fit" variant: all emojis, feature extraction included
  3. "category" variant on the same dir (features reused)
  4. cached rerun of "fit" (marker hit)
  5. validate_dataset_dir over both annotation sets
"""

import argparse
import os
import tempfile
import time

import torch

from mmf_refnet.data.emoji_memes import prepare_emoji_memes, validate_dataset_dir
from mmf_refnet.data.features import BATCH_SIZE


def _timed(label, fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<44s} {seconds:8.1f} s")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="default: a fresh temporary directory")
    parser.add_argument("--max-emojis", type=int, default=None, help="default: all emojis")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        _timed("test subset (40 emojis, batch 8)", lambda: prepare_emoji_memes(
            os.path.join(tmp, "subset"), "fit", max_emojis=40, batch_size=8, progress=False))
        data_dir = args.data_dir or os.path.join(tmp, "full")
        fit, seconds = _timed("full fit variant (extraction included)", lambda: prepare_emoji_memes(
            data_dir, "fit", max_emojis=args.max_emojis, batch_size=args.batch_size))
        written = fit["features"]["written"]
        if written:
            print(f"{'':<44s} {written} images, {1000 * seconds / written:.0f} ms/image")
        _timed("category variant (features reused)", lambda: prepare_emoji_memes(
            data_dir, "category", max_emojis=args.max_emojis, batch_size=args.batch_size))
        again, _ = _timed("cached rerun of fit", lambda: prepare_emoji_memes(
            data_dir, "fit", max_emojis=args.max_emojis, batch_size=args.batch_size))
        assert again["cached"], "expected a cache hit"
        summary, _ = _timed("validate_dataset_dir", lambda: validate_dataset_dir(fit["root"]))
        print(f"rows per split (fit): {fit['counts']}; features checked: {summary['features_checked']}")


if __name__ == "__main__":
    main()
