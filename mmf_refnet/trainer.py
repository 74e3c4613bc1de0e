"""``refnet_trainer``: rc10's ``base_trainer`` with the speed options of a 2020s stack.

Select it with ``training.trainer: refnet_trainer``. Metrics, checkpointing, early
stopping, evaluation, logging and distributed training are rc10's own: only the
forward pass (autocast, DDP ``no_sync`` while accumulating), the loss check, the
backward/optimizer step and the setup around them are overridden.

Keys under ``training:`` (a key missing from the config takes the default here):

``amp`` (``off``)
    Mixed precision for forward passes (training and evaluation): ``bf16`` or
    ``fp16`` autocast, ``off`` (fp32), or ``auto`` = bf16 on a CUDA device that
    supports it or on an x86 CPU with native bf16 instructions (``avx512_bf16``
    or ``amx_bf16`` in /proc/cpuinfo), else off: without them bf16 autocast on a
    CPU is slower than fp32. Off by default because a host-bound GPU step (the
    ViLBERT-base step at batch 32) pays for autocast's casts and gains nothing;
    the demo configs use ``auto`` (timings: benchmarks/RESULTS.md). ``fp16``
    adds a ``torch.amp.GradScaler`` whose state is saved in every checkpoint.
    YAML reads a bare ``off`` as ``false``; both mean fp32.
``tf32`` (``true``)
    CUDA only: float32 matmuls/convolutions may use TF32 tensor cores.
``fused_optimizer`` (``true``)
    torch ``Adam``/``AdamW`` are built with ``fused=True`` (one multi-tensor
    kernel instead of a loop over tensors), falling back silently to
    the default implementation where fused kernels are unavailable. An explicit
    ``fused``/``foreach`` in ``optimizer.params`` wins.
``compile`` (``false``)
    ``torch.compile`` the model in place (``nn.Module.compile``), so checkpoint
    keys stay those of the plain model (no ``_orig_mod.`` prefix). Off by
    default: compiling costs minutes, which short runs never win back. A string
    is passed as the compile ``mode`` (e.g. ``max-autotune``).
``update_frequency`` (``1``)
    Gradient accumulation: one optimizer step every K micro-batches, each loss
    divided by K; ``num_updates`` (and every interval counted in updates) counts
    optimizer steps. Batch-dependent losses (the MS loss) still see one
    micro-batch at a time.
``detect_anomaly`` (``false``)
    rc10's key, honoured as before (``mmf_refnet.compat.anomaly_detection``).
``check_replicas`` (``false``)
    With several processes, every ``log_interval`` updates: each rank's parameter checksum
    (``training_state.parameter_checksum``) is gathered and logged; replicas that differ stop
    the run with ``ReplicasDiffer`` naming the ranks and the first differing parameter.

Resuming (``checkpoint.resume=True``) continues the same run: every checkpoint
also holds the random generator states of every rank, the training data's seed,
epoch and batches consumed (``mmf_refnet.data.resumable``), the LR scheduler,
the training meter and whether the evaluation of its update was still to come.
rc10 built the LR scheduler after loading the checkpoint, so the first update
after a resume used the initial learning rate; here the scheduler continues.
Evaluation draws no random numbers (its draws are forgotten), so a run that
resumes after an evaluation sees the same generator states as one that ran it.
The state travels inside the optimizer's state dict (as the GradScaler's does),
so a load that resets the optimizer or copies pretrained weights ignores it.

Training stops at ``max_updates`` (rc10 made one update more when ``max_updates`` fell inside an
epoch), and a distributed run numbers its epochs 1, 2, 3, ... as one process does (rc10 added the
world size to the count after each epoch, which changed every later epoch's data order).

A non-finite total loss stops training with ``FloatingPointError`` naming the
update and every individual loss, before it reaches the parameters (one host
sync per micro-batch; MMF's non-pinned ``prepare_batch`` copy syncs anyway).
fp16 overflow in the *gradients* is the GradScaler's business: it skips that
step. In a distributed run the failing rank raises and torchrun stops the rest.

Measured (benchmarks/train_step.py): anomaly detection off is the big win;
at Hateful Memes' batch 32 the ViLBERT-base step is host-bound on an H100, so
bf16 autocast gains little over TF32 there and ``compile`` is what helps.
"""

import contextlib
import re
import warnings
from typing import Dict, Optional

import torch
from mmf.common.registry import registry
from mmf.trainers.base_trainer import BaseTrainer
from mmf.utils.general import clip_gradients, get_optimizer_parameters
from mmf.utils.timer import Timer
from omegaconf import OmegaConf

from mmf_refnet import training_state
from mmf_refnet.data.resumable import ResumableDatasetLoader

AMP_MODES = ("auto", "bf16", "fp16", "off")
DEFAULTS = {"amp": "off", "tf32": True, "fused_optimizer": True, "compile": False, "update_frequency": 1,
            "check_replicas": False}
FUSABLE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
SCALER_KEY = "grad_scaler"  # where the GradScaler state lives inside the optimizer's state_dict
TRAINING_STATE_KEY = "refnet_training_state"  # where the resume state lives inside it


def training_option(training_config, key: str):
    """``training.<key>``; this module's default when the config predates the key or sets it to null."""
    value = training_config.get(key, None) if training_config is not None else None
    return DEFAULTS[key] if value is None else value


def amp_mode(setting) -> str:
    """Normalise ``training.amp``: YAML turns a bare ``off`` into ``False``."""
    if setting is None or setting is False:
        return "off"
    if setting is True:
        return "auto"
    mode = str(setting).strip().lower()
    if mode not in AMP_MODES:
        raise ValueError(f"training.amp must be one of {AMP_MODES} (or true/false), got {setting!r}")
    return mode


def resolve_amp(setting, device) -> Optional[torch.dtype]:
    """The autocast dtype for ``training.amp`` on ``device``; None means fp32.

    Only asks CUDA about bf16 support when the device is CUDA, so CPU runs never
    initialise CUDA.
    """
    mode, device = amp_mode(setting), torch.device(device)
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda":
            native_bf16 = torch.cuda.is_bf16_supported()
        else:
            native_bf16 = device.type == "cpu" and cpu_has_native_bf16()
        return torch.bfloat16 if native_bf16 else None
    return torch.bfloat16 if mode == "bf16" else torch.float16


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU's flags list bf16 dot-product instructions (Linux x86; False elsewhere)."""
    try:
        with open(cpuinfo) as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in CPU_BF16_FLAGS)


def autocast(device, dtype: Optional[torch.dtype]):
    """Autocast to ``dtype`` on ``device``'s type, or a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def enable_tf32(device, enabled: bool) -> bool:
    """TF32 matmuls on CUDA (PyTorch's 'high' fp32 precision). CPU precision is never changed."""
    if not enabled or torch.device(device).type != "cuda":
        return False
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    return True


def grad_scaler(device, dtype: Optional[torch.dtype]):
    """A GradScaler for fp16 autocast (bf16 has fp32's range and needs none)."""
    if dtype is not torch.float16:
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def fused_kwargs(device) -> dict:
    """Constructor flags that select the fused Adam/AdamW kernel where torch has one."""
    return {"fused": True} if torch.device(device).type in ("cuda", "cpu") else {}


def with_fused_kernels(optimizer, model, config, device):
    """``optimizer`` rebuilt with ``fused=True`` when it is torch's Adam/AdamW.

    Built before any step or checkpoint load, so no state is lost. Returns the
    original optimizer when the flag is not applicable, set explicitly in
    ``optimizer.params``, or rejected by torch (old torch, unsupported dtypes).
    """
    if type(optimizer) not in FUSABLE_OPTIMIZERS:
        return optimizer
    params = OmegaConf.to_container(config.optimizer.get("params", None) or OmegaConf.create({}), resolve=True)
    flags = fused_kwargs(device)
    if not flags or "fused" in params or "foreach" in params:
        return optimizer
    try:
        return type(optimizer)(get_optimizer_parameters(model, config), **params, **flags)
    except (RuntimeError, ValueError, TypeError):
        return optimizer


def keep_scaler_in_optimizer_state(optimizer, scaler) -> None:
    """Save/restore ``scaler`` with ``optimizer.state_dict()``.

    rc10's ``Checkpoint.save`` writes a fixed dict whose ``optimizer`` entry is
    ``optimizer.state_dict()``; torch's optimizer state-dict hooks add the scaler
    there and restore it in ``load_state_dict``. Every MMF checkpoint path
    (current/best/model_N.ckpt, resume, ``reset.optimizer``) then covers the
    scaler without re-implementing ``Checkpoint``.
    """

    def save(_, state_dict):
        state_dict[SCALER_KEY] = scaler.state_dict()
        return state_dict

    def load(_, state_dict):
        saved = state_dict.pop(SCALER_KEY, None)
        if saved is not None:
            scaler.load_state_dict(saved)
        return state_dict

    optimizer.register_state_dict_post_hook(save)
    optimizer.register_load_state_dict_pre_hook(load)


def keep_training_state_in_optimizer_state(optimizer, trainer) -> None:
    """Save ``trainer.training_state()`` with ``optimizer.state_dict()``; hand it back on load.

    As with the scaler, every rc10 checkpoint file then carries it, and rc10's
    own rules decide when it is loaded: not with ``checkpoint.reset.optimizer``
    or ``reset.all``, nor through ``pretrained_state_mapping``.
    """

    def save(_, state_dict):
        state_dict[TRAINING_STATE_KEY] = trainer.training_state()
        return state_dict

    def load(_, state_dict):
        trainer.receive_training_state(state_dict.pop(TRAINING_STATE_KEY, None))
        return state_dict

    optimizer.register_state_dict_post_hook(save)
    optimizer.register_load_state_dict_pre_hook(load)


LOW_PRECISION = (torch.float16, torch.bfloat16)


def _to_fp32(value):
    if isinstance(value, torch.Tensor) and value.dtype in LOW_PRECISION:
        return value.float()
    return value


def outputs_to_fp32(output) -> None:
    """Cast half-precision tensors of a model output/report (and its dicts) to fp32, in place.

    Metrics and reports call ``.numpy()``/sklearn, which reject bf16.
    """
    for key, value in list(output.items()):
        if isinstance(value, dict):
            for inner, tensor in list(value.items()):
                value[inner] = _to_fp32(tensor)
        else:
            output[key] = _to_fp32(value)


def _as_number(value) -> float:
    return value.detach().float().mean().item() if isinstance(value, torch.Tensor) else float(value)


@contextlib.contextmanager
def stepping_by_update():
    """rc10 steps its LR scheduler with ``step(num_updates)``: the closed form for that update, which is
    what it means; torch warns that the argument is deprecated, which says nothing to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape("The epoch parameter in `scheduler.step()`"))
        yield


def check_finite_loss(loss: torch.Tensor, losses: Dict[str, torch.Tensor], update: int, iteration: int) -> None:
    """Raise ``FloatingPointError`` when the total loss is NaN/inf (one host sync per step)."""
    if bool(torch.isfinite(loss.detach()).all()):
        return
    details = ", ".join(f"{name}={_as_number(value):.6g}" for name, value in losses.items())
    raise FloatingPointError(
        f"refnet_trainer: non-finite total loss {_as_number(loss)} at update {update} (iteration {iteration}); "
        f"individual losses: {details}. Training stopped before the parameters were changed. Check this batch's "
        "inputs for NaN/inf, lower the learning rate, try training.amp: off, or set training.detect_anomaly: true "
        "to find the operation."
    )


@registry.register_trainer("refnet_trainer")
class RefNetTrainer(BaseTrainer):
    """rc10's BaseTrainer + AMP, TF32, fused AdamW, torch.compile, accumulation, NaN check."""

    amp_dtype: Optional[torch.dtype] = None
    tf32 = False
    scaler = None
    update_frequency = 1
    micro_steps = 0
    stepped = False
    # resume state (see the module docstring)
    accepting_training_state = False
    received_training_state: Optional[dict] = None
    rng_to_restore: Optional[dict] = None
    rng_states: Optional[list] = None
    rng_states_update: Optional[int] = None
    evaluation_follows = False
    pending_evaluation = False
    epoch_start_iteration = 0
    resume_epoch: Optional[int] = None

    def option(self, key: str):
        return training_option(self.config.training, key)

    def load_datasets(self):
        """rc10's datasets, with training loaders that can resume mid-epoch."""
        self.dataset_loader = ResumableDatasetLoader(self.config, on_train_epoch=self._train_epoch_started)
        super().load_datasets()

    def load_model_and_optimizer(self):
        self.amp_dtype = resolve_amp(self.option("amp"), self.device)
        self.tf32 = enable_tf32(self.device, bool(self.option("tf32")))
        super().load_model_and_optimizer()  # builds, then calls load_extras and parallelize_model

    def load_extras(self):
        """Speed options first, then rc10's extras (which load the checkpoint)."""
        if self.option("fused_optimizer"):
            self.optimizer = with_fused_kernels(self.optimizer, self.model, self.config, self.device)
        self.scaler = grad_scaler(self.device, self.amp_dtype)
        if self.scaler is not None:
            keep_scaler_in_optimizer_state(self.optimizer, self.scaler)
        self.update_frequency = int(self.option("update_frequency"))
        if self.update_frequency < 1:
            raise ValueError(f"training.update_frequency must be >= 1, got {self.update_frequency}")
        self.micro_steps, self.stepped = 0, False
        keep_training_state_in_optimizer_state(self.optimizer, self)
        self.received_training_state, self.accepting_training_state = None, True
        try:
            super().load_extras()  # builds the LR scheduler after the checkpoint loaded
        finally:
            self.accepting_training_state = False
        self.epoch_start_iteration = self.current_iteration
        self.resume_training_state(self.received_training_state)
        self.writer.write(self.settings_summary())

    def parallelize_model(self):
        super().parallelize_model()
        setting = self.option("compile")
        if setting:
            kwargs = {"mode": setting} if isinstance(setting, str) else {}
            self.model.compile(**kwargs)  # in place: state_dict keys unchanged

    def settings_summary(self) -> str:
        fused = bool(self.optimizer.defaults.get("fused")) if hasattr(self.optimizer, "defaults") else False
        return (
            f"refnet_trainer: amp={amp_mode(self.option('amp'))} (autocast {self.amp_dtype or 'off'}), "
            f"grad_scaler={self.scaler is not None}, tf32={self.tf32}, fused_optimizer={fused}, "
            f"compile={self.option('compile')}, update_frequency={self.update_frequency}, "
            f"data_seed={getattr(self.dataset_loader, 'data_seed', None)} (rank 0's, every rank's order)"
        )

    def _forward_pass(self, batch):
        training = self.model.training and torch.is_grad_enabled()
        with autocast(self.device, self.amp_dtype), self._gradient_sync(training):
            report = super()._forward_pass(batch)
        if self.amp_dtype is not None:
            outputs_to_fp32(report)
        return report

    def _gradient_sync(self, training: bool):
        """DDP's ``no_sync`` for every micro-batch but the last of an update."""
        last = (self.micro_steps + 1) % self.update_frequency == 0
        if training and not last and hasattr(self.model, "no_sync"):
            return self.model.no_sync()
        return contextlib.nullcontext()

    def _extract_loss(self, report):
        loss = super()._extract_loss(report)
        check_finite_loss(loss, report.losses, self.num_updates + 1, self.current_iteration)
        return loss

    def _backward(self, loss):
        if self.update_frequency > 1:
            loss = loss / self.update_frequency
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()
        self.micro_steps += 1
        self.stepped = self.micro_steps % self.update_frequency == 0
        if self.stepped:
            self._optimizer_step()

    def _optimizer_step(self):
        if self.should_clip_gradients:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            clip_gradients(self.model, self.num_updates, self.tb_writer, self.config)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._run_scheduler()
        self.num_updates += 1
        self.profile("Backward time")

    def _run_scheduler(self):
        with stepping_by_update():
            super()._run_scheduler()

    def _logistics(self, report):
        """rc10's logging/checkpoint/validation, only after an optimizer step; True (stop) at max_updates."""
        if not self.stepped:
            return False
        if self.option("check_replicas") and self.num_updates % self.log_interval == 0:
            self.writer.write(training_state.check_replicas(self.model, self.num_updates))
        should_break = super()._logistics(report)
        # rc10's loop stops only once num_updates > max_updates: one update more when max_updates
        # falls inside an epoch
        return should_break or self.num_updates >= self.max_updates

    # --- resume: the state a checkpoint carries -------------------------------

    def training_state(self) -> dict:
        """Everything besides weights, optimizer and counters that the next updates depend on."""
        if self.rng_states_update != self.num_updates or self.rng_states is None:
            self.rng_states = [training_state.rng_state()]  # a save outside the loop (single process)
        loader = self.dataset_loader if isinstance(getattr(self, "dataset_loader", None), ResumableDatasetLoader) else None
        return {
            "num_updates": self.num_updates,
            "rng": self.rng_states,
            "data": None if loader is None else {
                "seed": loader.data_seed, "epoch": self.current_epoch, "world_size": len(self.rng_states),
                "batches": self.current_iteration - self.epoch_start_iteration},
            "lr_scheduler": self.lr_scheduler.state_dict() if getattr(self, "lr_scheduler", None) else None,
            "meter": training_state.meter_state(self.meter) if getattr(self, "meter", None) else {},
            "pending_evaluation": self.evaluation_follows,
        }

    def receive_training_state(self, state: Optional[dict]) -> None:
        """Keep the state of a checkpoint loaded while the trainer loads (not of the final restore)."""
        if self.accepting_training_state:
            self.received_training_state = state

    def resume_training_state(self, state: Optional[dict]) -> None:
        """After rc10 loaded the checkpoint and built the scheduler: continue where the run stopped."""
        if state is not None and state.get("num_updates") != self.num_updates:
            state = None  # checkpoint.reset.counts: a new run that starts from these weights
        self._resume_lr_scheduler(state)
        if state is None:
            if self.num_updates > 0 and "train" in getattr(self, "run_type", "train"):
                self.writer.write(
                    f"refnet_trainer: the checkpoint holds no training state (an older version, or "
                    f"checkpoint.reset.optimizer): training goes on from update {self.num_updates} at its learning "
                    "rate, but the data order, random numbers and logged averages start afresh", "warning")
            return
        training_state.restore_meter(self.meter, state.get("meter") or {})
        self.pending_evaluation = bool(state.get("pending_evaluation"))
        self._resume_data_position(state.get("data"))
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        states = state.get("rng") or []
        self.rng_to_restore = states[rank] if rank < len(states) else None
        if self.rng_to_restore is None:
            self.writer.write(f"refnet_trainer: the checkpoint holds random generator states for {len(states)} "
                              f"process(es), none for rank {rank}: its random numbers start afresh", "warning")

    def _resume_lr_scheduler(self, state: Optional[dict]) -> None:
        """The learning rate of update num_updates + 1: where rc10's ``step(num_updates)`` after update N left it,
        under this config's schedule (a resume may change ``max_updates``); saved scheduler state first."""
        if self.lr_scheduler is None or self.num_updates == 0:
            return
        if state is not None and state.get("lr_scheduler"):
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        with stepping_by_update():
            self.lr_scheduler.step(self.num_updates - 1)

    def _resume_data_position(self, data: Optional[dict]) -> None:
        loader = getattr(self, "dataset_loader", None)
        if not data or not isinstance(loader, ResumableDatasetLoader) or not loader.train_batches:
            return
        if len(loader.train_batches) > 1:
            self.writer.write("refnet_trainer: with several training datasets a resumed run starts a new epoch "
                              "(rc10 interleaves them at random)", "warning")
            return
        loader.resume_at(data["seed"], data["epoch"], data["batches"])
        self.epoch_start_iteration = self.current_iteration - data["batches"]
        self.resume_epoch = data["epoch"]

    def _train_epoch_started(self, epoch: int, skipped: int) -> None:
        self.current_epoch = epoch  # the loader's count (rc10 jumps by the world size)
        registry.register("current_epoch", epoch)
        self.epoch_start_iteration = self.current_iteration - skipped

    def _capture_rng_states(self) -> None:
        """All ranks' generator states for the checkpoint(s) of this update (collective when distributed)."""
        self.rng_states = training_state.gather_rng_states()
        self.rng_states_update = self.num_updates

    def _try_snapshot(self):
        if self.num_updates % self.checkpoint_interval == 0:
            self._capture_rng_states()
        self.evaluation_follows = self.num_updates % self.evaluation_interval == 0
        try:
            super()._try_snapshot()
        finally:
            self.evaluation_follows = False

    def _try_full_validation(self, force=False):
        if force or self.num_updates % self.evaluation_interval == 0:
            self._capture_rng_states()  # early stopping saves after the evaluation
        return super()._try_full_validation(force)

    def evaluate(self, loader, use_tqdm=False, single_batch=False):
        """rc10's evaluation, whose random draws (shuffled val loader, workers) are forgotten."""
        with training_state.preserved_rng():
            return super().evaluate(loader, use_tqdm, single_batch)

    def train(self):
        if self.rng_to_restore is not None:
            training_state.set_rng_state(self.rng_to_restore)
            self.rng_to_restore = None
        if self.pending_evaluation and "train" in self.run_type:
            self.pending_evaluation = False
            self.writer.write(f"refnet_trainer: the run stopped before evaluating update {self.num_updates}: "
                              "evaluating it now")
            self.train_timer, self.snapshot_timer = Timer(), Timer()
            if self._try_full_validation(force=True):  # early stopping ended the run
                self.finalize()
                return
        if self.resume_epoch is not None:
            self.current_epoch, self.resume_epoch = self.resume_epoch - 1, None  # rc10's loop adds 1 first
        super().train()
