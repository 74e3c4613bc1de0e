"""``refnet``: helper commands around MMF (training itself is ``mmf_run``).

    refnet demo              prepare the emoji memes data, train + evaluate with mmf_run,
                             write the predictions CSV with mmf_predict, print where things are
    refnet prepare-demo      only build the emoji memes dataset (cached)
    refnet extract-features  EfficientNet-Lite0 region features for your own images
    refnet own-data-config   check and split your (id, img, text, label) jsonl, write its MMF config
    refnet analyze graph     latent graph induction (Theorem 4.1): --synthetic, or --checkpoint CKPT
    refnet analyze tsne      t-SNE of fused embeddings and refiner outputs (Fig. 5) of checkpoints
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

REPO_CONFIGS = os.path.join("projects", "refnet", "configs")
DEMO_MODELS = ("vilbert", "refnet", "refnet_ms")


def _console_script(name: str) -> str:
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"refnet: '{name}' is not installed (pip install mmf==1.0.0rc10 --no-deps)")
    return found


def _demo_config(model: str, config_dir: str) -> str:
    path = os.path.abspath(os.path.join(config_dir, "demo", f"{model}.yaml"))
    if not os.path.isfile(path):
        raise SystemExit(f"refnet demo: config '{path}' not found; run from the repository root or pass --config-dir")
    return path


def _summary(save_dir: str, split: str) -> str:
    from mmf_refnet.train_log import last_metrics

    metrics = last_metrics(save_dir, split)
    shown = [f"{name} {metrics[name]}" for name in ("accuracy", "roc_auc", "binary_f1") if name in metrics]
    return ", ".join(shown) or "(none logged)"


def _run(command, env) -> None:
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise SystemExit(f"refnet demo: {os.path.basename(command[0])} failed with exit code {result.returncode}")


def demo(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="refnet demo", allow_abbrev=False,
                                     description="Train ReFNet on the embedded emoji memes data.")
    parser.add_argument("--model", default="refnet_ms", choices=DEMO_MODELS)
    parser.add_argument("--data-dir", default=os.path.join("save", "demo", "data"))
    parser.add_argument("--save-dir", default=None, help="default: save/demo/<model>")
    parser.add_argument("--config-dir", default=REPO_CONFIGS)
    parser.add_argument("opts", nargs="*", help="extra MMF options, e.g. training.max_updates=100")
    args = parser.parse_args(argv)
    save_dir = os.path.abspath(args.save_dir or os.path.join("save", "demo", args.model))
    data_dir = os.path.abspath(args.data_dir)
    config = _demo_config(args.model, args.config_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    common = [f"config={config}", f"env.data_dir={data_dir}", f"env.save_dir={save_dir}", *args.opts]
    start = time.time()
    _run([_console_script("mmf_run"), *common], env)
    best = os.path.join(save_dir, "best.ckpt")
    report_dir = os.path.join(save_dir, "predictions")
    _run([_console_script("mmf_predict"), *common, "run_type=test", f"checkpoint.resume_file={best}",
          "checkpoint.resume_pretrained=False", f"env.report_dir={report_dir}"], env)
    csvs = sorted(glob.glob(os.path.join(report_dir, "*.csv")), key=os.path.getmtime)
    print(f"\nrefnet demo ({args.model}) finished in {time.time() - start:.0f} s")
    print(f"  validation (best checkpoint): {_summary(save_dir, 'val')}")
    print(f"  test:                         {_summary(save_dir, 'test')}")
    print(f"  best checkpoint:              {best}")
    print(f"  predictions CSV:              {csvs[-1] if csvs else '(not written)'}")
    return 0


def prepare_demo(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="refnet prepare-demo", allow_abbrev=False,
                                     description="Build the emoji memes dataset (cached).")
    parser.add_argument("--data-dir", default=os.path.join("save", "demo", "data"))
    parser.add_argument("--variant", default="fit", choices=("fit", "category"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-emojis", type=int, default=None)
    parser.add_argument("--confounders", default="random", choices=("random", "subcategory"))
    args = parser.parse_args(argv)
    from mmf_refnet.data.emoji_memes import prepare_emoji_memes

    result = prepare_emoji_memes(args.data_dir, variant=args.variant, seed=args.seed, max_emojis=args.max_emojis,
                                 confounder_kind=args.confounders)
    print(f"emoji memes ({args.variant}) in {result['root']}: {result['counts']} rows, {result['seconds']:.1f} s")
    return 0


def extract_features(argv=None) -> int:
    from mmf_refnet.data.features import main_extract_features

    return main_extract_features(argv)


def own_data_config(argv=None) -> int:
    from mmf_refnet.data.own_data import main_own_data_config

    return main_own_data_config(argv)


def _graph_inputs(args):
    """The arrays ``refnet analyze graph --checkpoint`` analyses, from an MMF checkpoint."""
    from mmf_refnet.analysis import collect

    config, model = collect.load_checkpoint_model(args.checkpoint, args.opt, args.device)
    arrays = collect.collect_from_model(config, model, args.split, args.max_samples, device=args.device)
    modalities = model.model.refiner.modalities
    return {"embeddings": arrays["fused"], "targets": {m: arrays[f"target_{m}"] for m in modalities},
            "decoders": {m: model.model.refiner.decoders.decoder(m) for m in modalities}}


def analyze_graph(argv) -> int:
    from mmf_refnet.analysis import graph

    return graph.main_graph(argv, load_checkpoint=_graph_inputs)


def analyze_tsne(argv) -> int:
    from mmf_refnet.analysis import collect

    parser = argparse.ArgumentParser(prog="refnet analyze tsne", allow_abbrev=False,
                                     description="t-SNE panels per checkpoint (paper Fig. 5).")
    parser.add_argument("--checkpoint", nargs="+", required=True, help="one or more best.ckpt/current.ckpt files")
    parser.add_argument("--name", nargs="*", default=None, help="panel titles (default: parent folder names)")
    parser.add_argument("--perplexity", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="tsne.png")
    collect.add_checkpoint_options(parser)
    args = parser.parse_args(argv)
    from mmf_refnet.analysis import tsne

    names = args.name or [os.path.basename(os.path.dirname(os.path.abspath(c))) for c in args.checkpoint]
    if len(names) != len(args.checkpoint):
        parser.error(f"--name gives {len(names)} names for {len(args.checkpoint)} checkpoints")
    runs = [collect.collect_embeddings(c, args.split, args.max_samples, args.opt, device=args.device)
            for c in args.checkpoint]
    tsne.plot_tsne(runs, names, args.out, perplexity=args.perplexity, seed=args.seed)
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


def analyze(argv) -> int:
    commands = {"graph": analyze_graph, "tsne": analyze_tsne}
    if not argv or argv[0] not in commands:
        print("usage: refnet analyze {graph,tsne} ...  (see --help of each)")
        return 2
    return commands[argv[0]](argv[1:])


COMMANDS = {"demo": demo, "prepare-demo": prepare_demo, "extract-features": extract_features,
            "own-data-config": own_data_config, "analyze": analyze}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
