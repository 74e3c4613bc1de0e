"""Training-step time with dynamic text padding vs rc10's padding to ``max_seq_length``.

    nice -n 5 python benchmarks/padding.py                    # CPU: demo model, hm, snli_ve, mmimdb at batch 32
    python benchmarks/padding.py --device cuda --size base --profiles hm:32 snli_ve:480 --json padding.json

Each profile draws per-row text lengths (BERT wordpieces, [CLS]/[SEP] included,
truncated at the dataset's ``max_seq_length`` as rc10's ``bert_tokenizer`` does)
from a distribution like the real dataset's (``PROFILES``, sources below), builds
``--steps`` collated batches padded to ``max_seq_length`` as rc10 collates them,
and times one training step of ``--model`` (refnet_trainer's recipe, see
_common.py; ``--amp`` defaults to ``auto`` like the demo) per condition:

``padded``   the batch as rc10 gives it (``training.text_padding: off``);
``longest``  cut by ``TextPadding`` to the longest row rounded up to 8 (the default);
``buckets``  cut to the smallest default bucket (16, 32, 64, … max_seq_length).

The cut runs inside the timed step, on the host batch, before the batch moves to
the device, as the dataset's ``prepare_batch`` does. Conditions share one model
and step the same batches in turn (interleaved: a shared machine's drift hits
all alike). Printed per condition: mean and median ms per step, mean text width,
and the ratio to ``padded`` (mean step time: the training bill). Asserts nothing.

Length sources (wordpieces per character / per word measured with the
bert-base-uncased vocabulary on offline English text: the 1,906 Noto emoji names
and the sentences of /usr/share/common-licenses/GPL-3: 5.0 characters per
wordpiece in both, 1.21-1.22 wordpieces per word; ``--calibrate`` prints them):

``hm``       Hateful Memes meme text: train.jsonl (8,500 rows) has 62 characters on
             average, shortest 4, longest 433 (statistics of the released file as a
             public repository's README reports them; github.com/bhoomika1909/memerag).
             Log-normal in characters fitted to the mean and to the maximum as the
             1-in-8,500 quantile (median 53 characters, sigma 0.55), 5 characters
             per wordpiece. max_seq_length 128.
``snli_ve``  SNLI-VE hypotheses (SNLI's hypotheses, whose premises are Flickr30k
             captions): 8.3 tokens on average (SNLI's dataset card, Bowman et al.
             2015). Log-normal in tokens with that mean; the spread (sigma 0.4, so
             1 % of hypotheses exceed 19 tokens) is an assumption; 1.1 wordpieces per
             token (SNLI's tokens already split punctuation). max_seq_length 128.
``mmimdb``   MM-IMDb plot summaries: paragraph-length; no per-row statistics were
             found offline, so assumed log-normal with a median of 90 words (sigma
             0.6), 1.2 wordpieces per word. max_seq_length 256, which about 9 % of
             these plots reach, so a batch of 32 is almost always full width.
"""

import argparse
import json
import math
import statistics
import sys
import time

import _common
import numpy as np
import torch

from mmf_refnet.data.text_padding import TextPadding

CHARS_PER_WORDPIECE = 5.0


def _hm(rng, n):
    chars = rng.lognormal(math.log(53.0), 0.55, n)
    return np.ceil(chars / CHARS_PER_WORDPIECE)


def _snli_ve(rng, n):
    sigma = 0.4
    tokens = rng.lognormal(math.log(8.3) - sigma ** 2 / 2, sigma, n)
    return np.ceil(np.round(tokens) * 1.1)


def _mmimdb(rng, n):
    words = rng.lognormal(math.log(90.0), 0.6, n)
    return np.ceil(words * 1.2)


# name: (max_seq_length, sampler of the wordpieces per row before [CLS]/[SEP])
PROFILES = {"hm": (128, _hm), "snli_ve": (128, _snli_ve), "mmimdb": (256, _mmimdb)}
CONDITIONS = {"padded": TextPadding("off"), "longest": TextPadding("longest"), "buckets": TextPadding("buckets")}


def row_lengths(profile: str, rng, count: int) -> np.ndarray:
    """Wordpieces per row with [CLS] and [SEP], truncated at max_seq_length like rc10's tokenizer."""
    width, sampler = PROFILES[profile]
    return np.clip(sampler(rng, count) + 2, 3, width).astype(int)


def text_batch(size: str, lengths: np.ndarray, width: int, seed: int):
    """A host-side collated batch (HM-like image side) whose text is padded to ``width`` as rc10 pads it."""
    batch = _common.synthetic_batch(size, len(lengths), "cpu", seed)
    vocab = _common.SIZES[size][0]["vocab_size"]
    generator = torch.Generator().manual_seed(seed)
    positions = torch.arange(width).unsqueeze(0)
    mask = (positions < torch.as_tensor(lengths).unsqueeze(1)).long()
    batch.input_ids = torch.randint(5, vocab, (len(lengths), width), generator=generator) * mask
    batch.input_mask, batch.segment_ids = mask, torch.zeros_like(mask)
    return batch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_arguments(parser, cpu_size="demo")
    parser.set_defaults(amp="auto")
    parser.add_argument("--model", default="refnet_ms", choices=("vilbert", "refnet", "refnet_ms"))
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), metavar="NAME[:BATCH]",
                        help=f"length profiles ({', '.join(PROFILES)}), each with an optional batch size")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset of "
                        + ", ".join(CONDITIONS))
    parser.add_argument("--calibrate", action="store_true",
                        help="only print wordpieces per character and per word on the offline English texts")
    return _common.resolve_arguments(parser.parse_args(argv))


def profile_batches(profile: str, batch_size: int, args):
    width = PROFILES[profile][0]
    rng = np.random.default_rng(0)
    return [text_batch(args.size, row_lengths(profile, rng, batch_size), width, seed)
            for seed in range(args.warmup + args.steps)]


def run_profile(profile: str, batch_size: int, args, workdir: str) -> list:
    config = _common.load_config(args.model, args.size, args.device, workdir)
    model = _common.build_model(config, args.model, args.device)
    step = _common.make_step("refnet", model, _common.make_optimizer("refnet", model, config, args.device),
                             args.device, args.amp)
    batches = profile_batches(profile, batch_size, args)
    names = args.conditions.split(",")
    times = {name: [] for name in names}
    widths = {name: [] for name in names}
    device = torch.device(args.device)

    def one_step(name, batch):
        _common.synchronize(args.device)
        start = time.perf_counter()
        prepared = CONDITIONS[name](batch.copy()).to(device)
        step(prepared)
        _common.synchronize(args.device)
        return time.perf_counter() - start, prepared.input_ids.size(1)

    print(f"... {profile}: batch {batch_size}, {args.warmup} warm-up + {args.steps} steps x {len(names)} conditions",
          file=sys.stderr, flush=True)
    with _common.recipe_settings("refnet", args.device):
        for index, batch in enumerate(batches):
            for name in names:
                seconds, width = one_step(name, batch)
                if index >= args.warmup:
                    times[name].append(seconds)
                    widths[name].append(width)
    rows = []
    for name in names:
        rows.append({"profile": profile, "batch": batch_size, "condition": name,
                     "ms_mean": 1e3 * statistics.fmean(times[name]), "ms_median": 1e3 * statistics.median(times[name]),
                     "width_mean": statistics.fmean(widths[name]), "width_max": max(widths[name]),
                     "max_seq_length": PROFILES[profile][0], "steps": len(times[name])})
    padded = next((row for row in rows if row["condition"] == "padded"), None)
    for row in rows:
        row["ratio_mean"] = row["ms_mean"] / padded["ms_mean"] if padded else None
        row["ratio_median"] = row["ms_median"] / padded["ms_median"] if padded else None
    return rows


def length_summary(profile: str, count: int = 100_000) -> dict:
    lengths = row_lengths(profile, np.random.default_rng(1), count)
    return {"mean": float(lengths.mean()), "p50": float(np.percentile(lengths, 50)),
            "p99": float(np.percentile(lengths, 99)), "at_max": float((lengths == PROFILES[profile][0]).mean())}


def _fmt(value, pattern):
    return "n/a" if value is None else pattern.format(value)


def report(rows: list, args, env: dict) -> None:
    print(f"# {env}  model={args.model} size={args.size} steps={args.steps} warmup={args.warmup} amp={args.amp}")
    for profile in dict.fromkeys(row["profile"] for row in rows):
        summary = length_summary(profile)
        print(f"# {profile}: row length (wordpieces) mean {summary['mean']:.1f}, median {summary['p50']:.0f}, "
              f"p99 {summary['p99']:.0f}, at max_seq_length {summary['at_max']:.1%}")
    print(f"{'profile':<8} {'batch':>5} {'condition':<9} {'ms mean':>9} {'ms median':>9} {'width':>12} "
          f"{'÷ padded (mean)':>15} {'(median)':>9}")
    for row in rows:
        print(f"{row['profile']:<8} {row['batch']:>5} {row['condition']:<9} {row['ms_mean']:>9.1f} "
              f"{row['ms_median']:>9.1f} {row['width_mean']:>6.1f} / {row['max_seq_length']:<3} "
              f"{_fmt(row['ratio_mean'], '{:.3f}'):>15} {_fmt(row['ratio_median'], '{:.3f}'):>9}")


GPL_TEXT = "/usr/share/common-licenses/GPL-3"


def calibrate() -> None:
    """Characters per wordpiece and wordpieces per word (bert-base-uncased vocabulary) on real English."""
    import os
    import re

    from transformers import AutoTokenizer

    from mmf_refnet.assets import asset_path
    from mmf_refnet.data.emoji import load_emoji_index

    tokenizer = AutoTokenizer.from_pretrained(asset_path("bert_uncased_tokenizer"))
    corpora = {"Noto emoji names": [record.name for record in load_emoji_index()]}
    if os.path.exists(GPL_TEXT):
        with open(GPL_TEXT) as handle:
            text = " ".join(handle.read().split())
        corpora["GPL-3 sentences"] = [s for s in re.split(r"(?<=[.;:])\s+", text) if len(s.split()) > 2]
    for name, texts in corpora.items():
        words, chars = sum(len(t.split()) for t in texts), sum(len(t) for t in texts)
        pieces = sum(len(tokenizer.tokenize(t)) for t in texts)
        print(f"{name}: {len(texts)} texts, {chars / pieces:.2f} characters per wordpiece, "
              f"{pieces / words:.3f} wordpieces per word")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.calibrate:
        calibrate()
        return
    env = _common.environment(args.device)
    rows = []
    with _common.workdir() as workdir:
        for spec in args.profiles:
            name, _, batch = spec.partition(":")
            if name not in PROFILES:
                raise SystemExit(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
            rows += run_profile(name, int(batch) if batch else args.batch_size, args, workdir)
    if args.json:  # first, so a report error cannot lose the measurements
        with open(args.json, "w") as handle:
            json.dump({"environment": env, "arguments": vars(args), "results": rows}, handle, indent=2)
    report(rows, args, env)


if __name__ == "__main__":
    main()
