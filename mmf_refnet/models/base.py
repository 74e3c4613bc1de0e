"""What every ReFNet model shares; a backbone adds ``build_backbone``, ``feature_sizes`` and
``pre_fusion`` (see ``refnet.py``, ``visual_bert_refnet.py``, ``mmbt_refnet.py``).

The model computes no loss: ``forward`` returns the ReFNet head's outputs and MMF's
``BaseModel.__call__`` adds the losses listed under the model's ``losses:``
(``mmf_refnet/configs/models/refnet_head.yaml``), through ``ModelLosses``.
"""

import os
from typing import Dict, List, Sequence, Tuple

import torch
from mmf.models.base_model import BaseModel
from mmf.utils.modeling import get_bert_configured_parameters
from torch import nn

from mmf_refnet.losses import ModelLosses, RefinerLoss
from mmf_refnet.modules.refnet_head import ReFNetHead

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "models")


def merge_equal_groups(groups):
    """One optimizer group per distinct setting (lr, weight decay, ...), in first-seen order; empty ones dropped."""
    merged = {}
    for group in groups:
        settings = tuple(sorted((key, repr(value)) for key, value in group.items() if key != "params"))
        merged.setdefault(settings, {**group, "params": []})["params"].extend(group["params"])
    return [group for group in merged.values() if group["params"]]


def freeze(module: nn.Module) -> None:
    """No gradients and eval mode (no dropout) for ``module``; ``ReFNetModel.train`` keeps it in eval mode."""
    for parameter in module.parameters():
        parameter.requires_grad = False
    module.eval()


def without_frozen(groups):
    """Optimizer groups without the parameters that take no gradient (a frozen backbone's)."""
    return [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups]


def decays(name: str, parameter: nn.Parameter) -> bool:
    """Weight decay for weight matrices; not for biases (the refiner's stacked ones are 2-d) or norm scales (1-d)."""
    return parameter.dim() > 1 and not name.rsplit(".", 1)[-1].startswith("bias")


class ReFNetModel(BaseModel):
    """A backbone (``model.bert``) under the ReFNet head (``model``).

    A subclass names its default YAML (``CONFIG``, in mmf_refnet/configs/models/) and the MMF
    model whose older checkpoint keys it reads (``MMF_MODEL``'s ``format_state_key``).
    """

    CONFIG: str = ""
    MMF_MODEL = BaseModel

    @classmethod
    def config_path(cls):
        return os.path.join(CONFIG_DIR, cls.CONFIG)

    @classmethod
    def format_state_key(cls, key):
        return cls.MMF_MODEL.format_state_key(key)

    def build_backbone(self) -> nn.Module:
        raise NotImplementedError

    def feature_sizes(self) -> Tuple[List[int], Dict[str, int]]:
        """Sizes of ``pre_fusion``'s outputs: (fusion inputs, refiner targets by modality)."""
        raise NotImplementedError

    def pre_fusion(self, sample_list) -> Tuple[Sequence[torch.Tensor], Dict[str, torch.Tensor]]:
        """(fusion inputs, refiner targets by modality) of a batch."""
        raise NotImplementedError

    def model_name(self) -> str:
        return self.config.get("model", None) or type(self).__name__

    def build(self):
        backbone = self.build_backbone()
        fusion_dims, target_dims = self.feature_sizes()
        self.model = ReFNetHead.from_config(self.config, fusion_dims, target_dims)
        self.model.bert = backbone
        if self.config.freeze_base:
            freeze(self.model.bert)

    def train(self, mode: bool = True):
        """A frozen backbone (``freeze_base``) stays in eval mode whatever the trainer asks (rc10 calls
        ``model.train()`` after every evaluation): its features are computed as in inference (no dropout)."""
        super().train(mode)
        if getattr(self, "config", None) is not None and self.config.freeze_base and hasattr(self, "model"):
            self.model.bert.eval()
        return self

    def init_losses(self):
        """MMF's hook (called after ``build``): the configured losses, as ReFNet models run them
        (see ``ModelLosses``); ``pretrain_refiner`` keeps only the label-free ones (paper Alg. 1).
        With every refiner term switched off (γ = 0) the forward skips the decoders."""
        self.losses = ModelLosses(self.config.get("losses", []), label_free_only=bool(self.config.pretrain_refiner))
        self.refines = any(isinstance(loss.loss_criterion, RefinerLoss) for loss in self.losses.losses)

    def forward(self, sample_list):
        return self.head_outputs(sample_list, refine=getattr(self, "refines", True))

    def head_outputs(self, sample_list, refine: bool = True):
        """The ReFNet head's outputs for a batch (no losses): what ``forward`` returns, refiner
        outputs included whether or not a loss reads them (``refine``)."""
        fusion_inputs, targets = self.pre_fusion(sample_list)
        return self.model(fusion_inputs, targets, refine=refine)

    def get_optimizer_parameters(self, config):
        """Every trainable part: backbone at lr × finetune_lr_multiplier (none of it if frozen), the head at lr.

        Groups with equal settings are merged (the head is 2 groups: weights with
        decay; biases and the LayerNorm weight without, as rc10 does for BERT):
        fused AdamW launches its kernels once per group.
        """
        lr = config.optimizer.params.lr
        groups = without_frozen(get_bert_configured_parameters(self.model.bert,
                                                               lr * float(self.config.finetune_lr_multiplier)))
        head = [(name, p) for part in self.model.parts() for name, p in part.named_parameters()]
        groups += [{"params": [p for name, p in head if decays(name, p)], "weight_decay": 0.01, "lr": lr},
                   {"params": [p for name, p in head if not decays(name, p)], "weight_decay": 0.0, "lr": lr}]
        return merge_equal_groups(groups)

    def upgrade_checkpoint_state(self, state_dict) -> None:
        """Older checkpoints' layout → this one, in place (called before ``pretrained_state_mapping`` copies;
        see compat/pretrained_upgrade). ``load_state_dict`` converts by itself."""
        self.model.refiner.decoders.upgrade_state_dict(state_dict)
