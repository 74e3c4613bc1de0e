"""``refnet``: MMF's ViLBERT with ReFNet's fusion, classifier and refiner (paper §3, §5).

The ViLBERT backbone stays at ``model.bert`` so MMF's ``pretrained_state_mapping``
(``model.bert: model.bert``) and ViLBERT checkpoints keep working. The pooled text
and visual outputs (the pre-fusion features F_i) are concatenated, a linear layer
makes the fused embedding (512-d), two linear layers classify it, and the refiner
decodes the fused embedding back into each F_i (loss Σ γ_i (1 − cos)).
"""

import os
from typing import Dict

import torch
from mmf.common.registry import registry
from mmf.models.vilbert import ViLBERT, ViLBERTBase
from mmf.utils.modeling import get_bert_configured_parameters
from omegaconf import OmegaConf
from torch import nn
from transformers.models.bert.configuration_bert import BertConfig

from mmf_refnet.losses import MultiSimilarity, labeled_subset, refiner_terms, zero_loss
from mmf_refnet.modules import pretrained, vilbert_inputs
from mmf_refnet.modules.refiner import Refiner

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "models")
MODALITIES = ("text", "image")


def build_vilbert_backbone(config, model_name: str) -> nn.Module:
    """MMF's ViLBERTBase: random init for ``bert_model_name: null``, else BERT weights for its text
    stream from a Hugging Face hub name or a local directory (``modules/pretrained``)."""
    bert_config = BertConfig.from_dict(OmegaConf.to_container(config, resolve=True))
    if config.bert_model_name is None:
        backbone = ViLBERTBase(bert_config)
        backbone.init_weights()
        return backbone
    key = f"model_config.{model_name}.bert_model_name"
    return pretrained.from_pretrained(ViLBERTBase, config.bert_model_name, bert_config, key)[0]


def merge_equal_groups(groups):
    """One optimizer group per distinct setting (lr, weight decay, ...), in first-seen order; empty ones dropped."""
    merged = {}
    for group in groups:
        settings = tuple(sorted((key, repr(value)) for key, value in group.items() if key != "params"))
        merged.setdefault(settings, {**group, "params": []})["params"].extend(group["params"])
    return [group for group in merged.values() if group["params"]]


def freeze(module: nn.Module) -> None:
    """No gradients and eval mode (no dropout) for ``module``; ``ReFNet.train`` keeps it in eval mode."""
    for parameter in module.parameters():
        parameter.requires_grad = False
    module.eval()


def without_frozen(groups):
    """Optimizer groups without parameters that take no gradient (a frozen backbone's)."""
    return [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups]


def decays(name: str, parameter: nn.Parameter) -> bool:
    """Weight decay for weight matrices; not for biases (the refiner's stacked ones are 2-d) or norm scales (1-d)."""
    return parameter.dim() > 1 and not name.rsplit(".", 1)[-1].startswith("bias")


class ClassifierHead(nn.Sequential):
    """Two linear layers on the fused embedding (paper §5)."""

    def __init__(self, fused_dim: int, hidden_dim: int, num_labels: int, dropout: float):
        super().__init__(nn.Linear(fused_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_labels))


@registry.register_model("refnet")
class ReFNet(ViLBERT):
    """ViLBERT + concat fusion + refiner; ``refnet_ms`` adds the MS loss."""

    masks_unlabeled = True  # label-based losses see labeled rows only (data.label_fraction checks this)

    @classmethod
    def config_path(cls):
        return os.path.join(CONFIG_DIR, "refnet.yaml")

    def build(self):
        config = self.config
        bi_hidden = int(config.bi_hidden_size)
        fused_dim = int(config.fused_dim)
        self.model = nn.Module()
        self.model.bert = build_vilbert_backbone(config, self._model_name())
        # The two pooled streams can differ in scale by an order of magnitude (random-init
        # poolers give values ~1e-2); normalising the concatenation keeps the linear fusion
        # and the classifier from seeing an almost constant input.
        self.model.fusion_norm = nn.LayerNorm(2 * bi_hidden) if config.fusion_norm else nn.Identity()
        self.model.fusion_dropout = nn.Dropout(float(config.hidden_dropout_prob))
        self.model.fusion = nn.Linear(2 * bi_hidden, fused_dim)
        self.model.classifier = ClassifierHead(
            fused_dim, int(config.classifier.hidden_dim), int(config.num_labels), float(config.classifier.dropout)
        )
        refiner = config.refiner
        self.model.refiner = Refiner(
            fused_dim,
            {modality: bi_hidden for modality in MODALITIES},
            hidden_dim=int(refiner.hidden_dim),
            target_map=refiner.target_map,
            refiner_dim=refiner.dim,
            dropout=float(refiner.dropout),
            detach_targets=bool(refiner.detach_targets),
        )
        # γ_i in the refiner's modality order (its outputs come stacked in that order)
        self.refiner_weights = {modality: float(refiner.weights[modality]) for modality in self.model.refiner.modalities}
        ms = config.ms_loss
        self.ms_weight = float(ms.weight)
        self.ms_loss = None
        if self.ms_weight > 0:
            self.ms_loss = MultiSimilarity(
                alpha=ms.alpha, beta=ms.beta, base=ms.base, miner_epsilon=ms.miner_epsilon,
                multilabel_rule=ms.multilabel_rule, global_batch=ms.global_batch,
            )
        # The model computes its configured losses itself (plus the refiner/MS terms),
        # so MMF's "losses already present" warning says nothing useful here.
        self._logged_warning["losses_present"] = True
        if config.freeze_base:
            freeze(self.model.bert)

    def train(self, mode: bool = True):
        """A frozen backbone (``freeze_base``) stays in eval mode whatever the trainer asks (rc10 calls
        ``model.train()`` after every evaluation): its features are computed as in inference (no dropout)."""
        super().train(mode)
        if getattr(self, "config", None) is not None and self.config.freeze_base and hasattr(self, "model"):
            self.model.bert.eval()
        return self

    def _model_name(self) -> str:
        return self.config.get("model", "refnet") or "refnet"

    def get_optimizer_parameters(self, config):
        """Every trainable part: backbone at lr × finetune_lr_multiplier (none of it if frozen), the head at lr.

        rc10's ViLBERT returns only ``bert`` and ``classifier``, which would leave
        the fusion layer and the refiner silently untrained. Groups with equal
        settings are merged (the head is 2 groups: weights with decay; biases
        and the LayerNorm weight without, as rc10 does for BERT): fused AdamW
        launches its kernels once per group.
        """
        lr = config.optimizer.params.lr
        groups = without_frozen(get_bert_configured_parameters(self.model.bert,
                                                               lr * float(self.config.finetune_lr_multiplier)))
        head = [(name, p) for part in (self.model.fusion_norm, self.model.fusion, self.model.classifier, self.model.refiner)
                for name, p in part.named_parameters()]
        groups += [{"params": [p for name, p in head if decays(name, p)], "weight_decay": 0.01, "lr": lr},
                   {"params": [p for name, p in head if not decays(name, p)], "weight_decay": 0.0, "lr": lr}]
        return merge_equal_groups(groups)

    def upgrade_checkpoint_state(self, state_dict) -> None:
        """Older checkpoints' layout → this one, in place (called before ``pretrained_state_mapping`` copies;
        see compat/pretrained_upgrade). ``load_state_dict`` converts by itself."""
        self.model.refiner.decoders.upgrade_state_dict(state_dict)

    def encode(self, sample_list) -> Dict[str, torch.Tensor]:
        """Backbone + fusion: the pre-fusion features and the fused embedding."""
        device = sample_list.input_ids.device
        text = vilbert_inputs.text_inputs(sample_list)
        image = vilbert_inputs.image_inputs(sample_list, device)
        outputs = self.model.bert(
            text["input_ids"],
            image["image_feature"],
            image["image_location"],
            text["token_type_ids"],
            text["attention_mask"],
            image["image_attention_mask"],
            output_all_encoded_layers=False,
        )
        pooled_text, pooled_image = outputs[2], outputs[3]  # same place in rc10's 5-tuple and newer 7-tuple
        concatenated = self.model.fusion_dropout(self.model.fusion_norm(torch.cat([pooled_text, pooled_image], dim=-1)))
        return {"text": pooled_text, "image": pooled_image, "fused": self.model.fusion(concatenated)}

    def forward(self, sample_list):
        encoded = self.encode(sample_list)
        fused = encoded["fused"]
        output = {"scores": self.model.classifier(fused), "fused_embedding": fused}
        refined, targets = self.model.refiner(fused, {m: encoded[m] for m in MODALITIES})
        output["losses"] = self._losses(sample_list, output, refined, targets)
        return output

    def _losses(self, sample_list, output, refined, targets) -> Dict[str, torch.Tensor]:
        """Refiner terms on every sample; downstream and MS terms on labeled samples only.

        ``sample_list.labeled`` (set by datasets with ``label_fraction`` < 1 or
        unlabeled rows) masks the label-based losses; a batch with no labeled
        sample contributes the refiner loss alone (the other terms are 0, never NaN).
        With ``pretrain_refiner`` only the refiner terms exist (paper Alg. 1).
        """
        prefix = f"{sample_list.dataset_type}/{sample_list.dataset_name}"
        losses = {f"{prefix}/refiner_{m}": term for m, term in refiner_terms(refined, targets, self.refiner_weights).items()}
        if self.config.pretrain_refiner or "targets" not in sample_list:
            return losses
        labeled = sample_list.get("labeled")
        if getattr(self, "losses", None) is not None:
            losses.update(self._downstream_losses(sample_list, output, labeled))
        if self.ms_loss is not None:
            ms = self.ms_loss(output["fused_embedding"], sample_list.targets, labeled)
            losses[f"{prefix}/ms_loss"] = (self.ms_weight * ms).view(1)
        return losses

    def _downstream_losses(self, sample_list, output, labeled) -> Dict[str, torch.Tensor]:
        """MMF's configured losses (cross_entropy, logit_bce, ...), on the labeled rows if masked."""
        if labeled is None:
            return self.losses(sample_list, output)
        subset = labeled_subset(sample_list, output["scores"], labeled)
        if subset is None:
            prefix = f"{sample_list.dataset_type}/{sample_list.dataset_name}"
            return {f"{prefix}/{loss.name}": zero_loss(output["scores"]) for loss in self.losses.losses}
        return self.losses(*subset)
