"""Shared by ``benchmarks/train_step.py`` and ``benchmarks/overhead.py``.

Models are built in-process from the project configs
(``projects/refnet/configs/hateful_memes/<model>.yaml``) with a size override,
random init, on synthetic collated ``SampleList`` batches shaped like MMF's
Hateful Memes feature batches (tensors on the device, per-sample box arrays on
the host, as MMF's collate and ``prepare_batch`` leave them). No downloads, no
dataset files.

Two step recipes, each the code path it names:

``rc10``    rc10's ``BaseTrainer`` step on today's torch: fp32 (matmul precision
            'highest'), ``torch.autograd.set_detect_anomaly(True)``, rc10's numpy
            image-location/mask preparation (its code, with ``.cuda()`` written
            ``.to(device)``), rc10's written-out attention (``fused_attention``
            off) and its host-built default masks (``vilbert_device.DEVICE_MASKS``
            off), the optimizer ``build_optimizer`` makes (torch's default AdamW
            implementation: foreach on CUDA, a loop on CPU),
            ``zero_grad → backward → step``.
``refnet``  ``refnet_trainer``'s step with its defaults, using its functions:
            autocast per ``--amp`` (default: the trainer's default, ``off``;
            ``auto`` = bf16 on CUDA and on CPUs with native bf16), TF32 on
            CUDA, fused AdamW, anomaly detection off, device-side input
            preparation, fused attention (SDPA), the finite-loss check; optionally
            ``torch.compile``.
"""

import argparse
import contextlib
import ctypes
import gc
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mmf_refnet  # noqa: E402,F401  (shims + registration)
from mmf_refnet import trainer as refnet_trainer  # noqa: E402
from mmf_refnet.compat import fused_attention, vilbert_device  # noqa: E402
from mmf_refnet.modules import vilbert_inputs  # noqa: E402

MODELS = ("vilbert", "refnet_ms")
PROJECT_CONFIGS = os.path.join(REPO, "projects", "refnet", "configs", "hateful_memes")
IMAGE_SIZE = (640, 480)

_TINY = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "v_hidden_size": 32, "v_num_hidden_layers": 2, "v_num_attention_heads": 2, "v_intermediate_size": 64,
    "bi_hidden_size": 32, "bi_num_attention_heads": 2,
    "v_biattention_id": [0, 1], "t_biattention_id": [0, 1], "vocab_size": 1000, "v_feature_size": 64,
}
_SMALL = {
    "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024,
    "v_hidden_size": 256, "v_num_hidden_layers": 2, "v_num_attention_heads": 4, "v_intermediate_size": 512,
    "bi_hidden_size": 256, "bi_num_attention_heads": 4,
    "v_biattention_id": [0, 1], "t_biattention_id": [2, 3], "vocab_size": 30522, "v_feature_size": 2048,
}
_BASE = {  # ViLBERT-base (the defaults of both model configs, spelled out)
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "v_hidden_size": 1024, "v_num_hidden_layers": 6, "v_num_attention_heads": 8, "v_intermediate_size": 1024,
    "bi_hidden_size": 1024, "bi_num_attention_heads": 8,
    "v_biattention_id": [0, 1, 2, 3, 4, 5], "t_biattention_id": [6, 7, 8, 9, 10, 11],
    "vocab_size": 30522, "v_feature_size": 2048,
}


def _demo_model() -> dict:
    """The demo configs' model (projects/refnet/configs/demo/defaults.yaml), random init."""
    with open(os.path.join(REPO, "projects", "refnet", "configs", "demo", "defaults.yaml")) as handle:
        model = yaml.safe_load(handle)["model_config"]["refnet"]
    return {key: model.get(key, default) for key, default in _BASE.items()}  # the rest: the model defaults


# backbone (ViLBERT keys; other backbones take the text stream's), refnet head, text length, regions, default batch
SIZES = {
    "tiny": (_TINY, {"fused_dim": 16, "classifier": {"hidden_dim": 16}, "refiner": {"hidden_dim": 32}}, 16, 10, 32),
    "demo": (_demo_model(), {}, 12, 50, 32),  # text length and regions of emoji_memes
    "small": (_SMALL, {}, 32, 36, 16),
    "base": (_BASE, {}, 128, 100, 32),
}
REFNET_MODELS = ("refnet", "refnet_ms", "visual_bert_refnet", "mmbt_refnet")
# bf16 dense tensor-core peak (TFLOP/s) by device-name fragment; first match wins
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0), ("4090", 165.0))


def add_common_arguments(parser: argparse.ArgumentParser, cpu_size: str = "tiny") -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--size", default=None, choices=tuple(SIZES), help=f"default: base on cuda, {cpu_size} on cpu")
    parser.set_defaults(cpu_size=cpu_size)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the size's (tiny 32, demo 32, small 16, base 32)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per condition (default 20 cpu / 30 cuda)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile needs >= 2)")
    parser.add_argument("--amp", default=refnet_trainer.DEFAULTS["amp"],
                        help="training.amp for the refnet recipe (default: the trainer's, off; the demo uses auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the results to this JSON file")


def resolve_arguments(args) -> argparse.Namespace:
    args.size = args.size or ("base" if args.device == "cuda" else args.cpu_size)
    args.batch_size = args.batch_size or SIZES[args.size][4]
    args.steps = args.steps or (30 if args.device == "cuda" else 20)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def environment(device: str) -> dict:
    info = {"torch": torch.__version__, "python": sys.version.split()[0], "device": device,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def default_peak_tflops(device: str):
    """bf16 dense peak for the GPU by name (989 = H100 SXM when unknown); None on CPU."""
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((peak for fragment, peak in PEAK_TFLOPS if fragment in name), 989.0)


# --- configs, models, batches -------------------------------------------------

def backbone_overrides(model: str, size: str) -> dict:
    """The size's backbone in ``model``'s keys: ViLBERT's as they are; VisualBERT and MMBT take
    the text stream's sizes and the region feature size."""
    backbone = dict(SIZES[size][0], bert_model_name=None)
    if model in ("visual_bert_refnet", "mmbt_refnet"):
        features = backbone["v_feature_size"]
        backbone = {key: backbone[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                   "intermediate_size", "vocab_size", "bert_model_name")}
        if model == "visual_bert_refnet":
            backbone["visual_embedding_dim"] = features
        else:
            backbone.update(modal_hidden_size=features, modal_encoder={"params": {"in_dim": features}})
    return backbone


def load_config(model: str, size: str, device: str, workdir: str, overrides=None):
    """The project config of ``model`` with the size's backbone/head (rc10 Configuration)."""
    from mmf.utils.configuration import Configuration
    from omegaconf import OmegaConf

    model_overrides = backbone_overrides(model, size)
    if model in REFNET_MODELS:
        model_overrides.update(SIZES[size][1])
        model_overrides = OmegaConf.to_container(OmegaConf.merge(model_overrides, overrides or {}))
    config = {"includes": [os.path.join(PROJECT_CONFIGS, f"{model}.yaml")], "model_config": {model: model_overrides},
              "training": {"device": device, "seed": 0}}
    path = os.path.join(workdir, f"{model}_{size}.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    args = argparse.Namespace(opts=[f"config={path}", f"env.save_dir={workdir}/save"], config_override=None)
    with contextlib.redirect_stdout(sys.stderr):
        return Configuration(args).get_config()


def build_model(config, model: str, device: str, seed: int = 0):
    from mmf.utils.build import build_model as mmf_build_model
    from omegaconf import open_dict

    attributes = config.model_config[model]
    with open_dict(attributes):
        attributes.model = model
    torch.manual_seed(seed)
    return mmf_build_model(attributes).to(device).train()


def synthetic_batch(size: str, batch_size: int, device: str, seed: int = 0):
    """A collated HM-like SampleList, moved as MMF's ``prepare_batch`` moves it."""
    from mmf.common.sample import Sample, SampleList

    backbone, _, length, regions, _ = SIZES[size]
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    samples = []
    for index in range(batch_size):
        sample = Sample()
        sample.input_ids = torch.from_numpy(rng.integers(5, backbone["vocab_size"], length))
        sample.input_mask = torch.ones(length, dtype=torch.long)
        sample.segment_ids = torch.zeros(length, dtype=torch.long)
        sample.image_feature_0 = torch.from_numpy(rng.standard_normal((regions, backbone["v_feature_size"]), np.float32))
        x1, y1 = rng.uniform(0, width / 2, regions), rng.uniform(0, height / 2, regions)
        boxes = np.stack([x1, y1, x1 + width / 3, y1 + height / 3], axis=1).astype(np.float32)
        sample.image_info_0 = {"bbox": boxes, "image_width": width, "image_height": height,
                               "max_features": torch.tensor(regions)}
        sample.targets = torch.tensor(index % 2)
        samples.append(sample)
    batch = SampleList(samples)
    batch.dataset_name, batch.dataset_type = "hateful_memes", "train"
    return batch.to(torch.device(device))


# --- the two step recipes -----------------------------------------------------

def rc10_image_inputs(container, device, with_cls_prob: bool = False) -> dict:
    """rc10 ViLBERT's image preparation (vilbert.py, get_image_and_text_features and
    forward's mask), numpy on the host, with ``.cuda()`` as ``.to(device)``."""
    image_info = container["image_info_0"]
    image_dim = image_info["max_features"]
    feature = container["image_feature_0"]
    bbox = np.array(image_info["bbox"], dtype=np.float32)
    image_w = np.array(image_info["image_width"], dtype=np.float32)
    image_h = np.array(image_info["image_height"], dtype=np.float32)
    location = np.zeros((bbox.shape[0], bbox.shape[1], 5), dtype=np.float32)
    location[:, :, :4] = bbox
    location[:, :, 4] = (location[:, :, 3] - location[:, :, 1]) * (location[:, :, 2] - location[:, :, 0]) / (
        image_w * image_h)[:, None]
    location[:, :, 0] = location[:, :, 0] / image_w[:, None]
    location[:, :, 1] = location[:, :, 1] / image_h[:, None]
    location[:, :, 2] = location[:, :, 2] / image_w[:, None]
    location[:, :, 3] = location[:, :, 3] / image_h[:, None]
    image_location = torch.tensor(location, dtype=torch.float).to(device)
    cls_prob = image_info.get("cls_prob", None) if hasattr(image_info, "get") else None
    image_target = torch.tensor(np.array(cls_prob, dtype=np.float32), dtype=torch.float).to(device)
    mask = torch.arange(feature.size(-2)).expand(*feature.size()[:-1]).to(device)
    if len(image_dim.size()) < len(mask.size()):
        image_dim = image_dim.unsqueeze(-1)
    return {"image_feature": feature, "image_location": image_location,
            "image_attention_mask": (mask < image_dim).long(), "image_target": image_target if with_cls_prob else None}


@contextlib.contextmanager
def rc10_settings():
    """Anomaly detection on, fp32 'highest' matmuls, rc10's numpy input preparation and attention."""
    precision, prepare = torch.get_float32_matmul_precision(), vilbert_inputs.image_inputs
    anomaly = torch.is_anomaly_enabled()
    switches = fused_attention.ENABLED, vilbert_device.DEVICE_MASKS
    torch.set_float32_matmul_precision("highest")
    torch.autograd.set_detect_anomaly(True)
    vilbert_inputs.image_inputs = rc10_image_inputs
    fused_attention.ENABLED = vilbert_device.DEVICE_MASKS = False
    try:
        yield
    finally:
        fused_attention.ENABLED, vilbert_device.DEVICE_MASKS = switches
        vilbert_inputs.image_inputs = prepare
        torch.autograd.set_detect_anomaly(anomaly)
        torch.set_float32_matmul_precision(precision)


@contextlib.contextmanager
def refnet_settings(device: str):
    """refnet_trainer's defaults: TF32 on CUDA, anomaly detection off."""
    precision, anomaly = torch.get_float32_matmul_precision(), torch.is_anomaly_enabled()
    refnet_trainer.enable_tf32(device, True)
    torch.autograd.set_detect_anomaly(False)
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(anomaly)
        torch.set_float32_matmul_precision(precision)


def total_loss(output) -> torch.Tensor:
    return sum(loss.mean() for loss in output["losses"].values())


def make_optimizer(recipe: str, model, config, device: str):
    from mmf.utils.build import build_optimizer

    optimizer = build_optimizer(model, config)
    if recipe == "refnet":
        optimizer = refnet_trainer.with_fused_kernels(optimizer, model, config, device)
    return optimizer


def make_step(recipe: str, model, optimizer, device: str, amp: str = refnet_trainer.DEFAULTS["amp"]):
    """One training step (forward + backward + optimizer) as the recipe's trainer does it."""
    if recipe == "rc10":
        def rc10_step(batch):
            loss = total_loss(model(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return rc10_step

    dtype = refnet_trainer.resolve_amp(amp, device)
    scaler = refnet_trainer.grad_scaler(device, dtype)

    def refnet_step(batch):
        with refnet_trainer.autocast(device, dtype):
            output = model(batch)
        if dtype is not None:
            refnet_trainer.outputs_to_fp32(output)
        loss = total_loss(output)
        refnet_trainer.check_finite_loss(loss, output["losses"], 0, 0)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return refnet_step


def recipe_settings(recipe: str, device: str):
    return rc10_settings() if recipe == "rc10" else refnet_settings(device)


# --- measurement --------------------------------------------------------------

def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(step, batch, device: str, count: int) -> list:
    """Seconds of each of ``count`` steps (device synchronised around each)."""
    times = []
    for _ in range(count):
        synchronize(device)
        start = time.perf_counter()
        step(batch)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def count_flops(model, batch, device: str) -> float:
    """FLOPs of one forward + backward (fp32, anomaly off); the optimizer is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        total_loss(model(batch)).backward()
    model.zero_grad(set_to_none=True)
    synchronize(device)
    return float(counter.get_total_flops())


def count_dispatched_ops(step, batch) -> int:
    """ATen ops one step dispatches (forward, backward, optimizer; views included).

    On a GPU that waits for the host (ViLBERT-base at batch 32 on an H100) each
    op is a launch or at least dispatcher time, so this is the GPU-free proxy for
    what a head costs there."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.count += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        step(batch)
    return Counter.count


def _status_kib(field: str):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """How far memory rises above its level at entry while the block runs: CUDA
    ``max_memory_allocated`` − allocated at entry, or on CPU peak RSS (VmHWM,
    reset through /proc/self/clear_refs) − RSS at entry (ru_maxrss if the reset
    is refused). Whatever stays allocated from before is not counted, so
    conditions can be measured one after another with earlier ones kept alive."""

    def __init__(self, device: str):
        self.device, self.bytes, self.kind, self.base = device, None, None, 0

    def __enter__(self):
        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base, self.kind = torch.cuda.memory_allocated(), "cuda max_memory_allocated rise"
            return self
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.base = (_status_kib("VmRSS") or 0) * 1024
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.kind = "cpu peak RSS rise"
        except OSError:
            self.kind = "cpu ru_maxrss rise (peak not resettable)"
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self.kind == "cpu peak RSS rise":
            peak = (_status_kib("VmHWM") or 0) * 1024
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.bytes = max(0, peak - self.base)
        return False


class Condition:
    """One model under one recipe: built, warmed up (memory measured), ready to time."""

    def __init__(self, model_name: str, recipe: str, args, workdir: str, compile_model=False, overrides=None):
        """``compile_model``: False, True (torch.compile's default mode) or a mode name, e.g. reduce-overhead;
        ``overrides``: model config values (ReFNet models)."""
        self.model_name, self.recipe, self.device = model_name, recipe, args.device
        mode = compile_model if isinstance(compile_model, str) and compile_model != "default" else None
        self.label = recipe + (f"+compile({mode})" if mode else "+compile" if compile_model else "")
        config = load_config(model_name, args.size, args.device, workdir, overrides)
        with PeakMemory(args.device) as memory:
            self.model = build_model(config, model_name, args.device)
            optimizer = make_optimizer(recipe, self.model, config, args.device)
            self.batch = synthetic_batch(args.size, args.batch_size, args.device)
            if compile_model:
                self.model.compile(mode=mode)
            self.step = make_step(recipe, self.model, optimizer, args.device, args.amp)
            warmup = self.run(max(1, args.warmup))
        self.times = []
        self.row = {"model": model_name, "recipe": self.label, "first_step_s": warmup[0],
                    "peak_memory_mib": memory.bytes / 2**20, "memory_kind": memory.kind,
                    "parameters": sum(p.numel() for p in self.model.parameters())}

    def run(self, count: int) -> list:
        with recipe_settings(self.recipe, self.device):
            return timed(self.step, self.batch, self.device, count)

    def flops(self) -> float:
        return count_flops(self.model, self.batch, self.device)

    def dispatched_ops(self) -> int:
        with recipe_settings(self.recipe, self.device):
            return count_dispatched_ops(self.step, self.batch)

    def result(self) -> dict:
        times = self.times
        return dict(self.row, ms_per_step=1e3 * statistics.median(times), ms_p10=1e3 * quantile(times, 0.1),
                    ms_p90=1e3 * quantile(times, 0.9), steps=len(times))


def time_interleaved(conditions, steps: int) -> None:
    """One step of each condition in turn, ``steps`` times: drift and noisy
    neighbours hit every condition alike."""
    for _ in range(steps):
        for condition in conditions:
            condition.times += condition.run(1)


def prewarm(args, workdir: str) -> None:
    """CPU: a first model build pays one-time costs (lazy kernels, caches) into RSS; pay them here."""
    if args.device == "cpu":
        for recipe in ("rc10", "refnet"):
            Condition(MODELS[-1], recipe, argparse.Namespace(**{**vars(args), "warmup": 1}), workdir)
        gc.collect()


def quantile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def workdir():
    return tempfile.TemporaryDirectory(prefix="refnet_bench_")
