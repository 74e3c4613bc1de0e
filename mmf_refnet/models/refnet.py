"""``refnet``: MMF's ViLBERT under the ReFNet head (paper §3, §5).

Fusion inputs and refiner targets are the same pair: ViLBERT's pooled text and
visual outputs, the two streams' summaries before anything mixes them
(the paper's pre-fusion features F_i; its co-attention layers exchange
information between the streams, but each stream keeps its own output).
"""

from mmf.common.registry import registry
from mmf.models.vilbert import ViLBERT, ViLBERTBase
from omegaconf import OmegaConf
from torch import nn
from transformers.models.bert.configuration_bert import BertConfig

from mmf_refnet.models.base import ReFNetModel
from mmf_refnet.modules import pretrained, vilbert_inputs


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


@registry.register_model("refnet")
class ReFNet(ReFNetModel):
    """ViLBERT + the ReFNet head; ``refnet_ms`` is the same network with the MS loss on."""

    CONFIG = "refnet.yaml"
    MMF_MODEL = ViLBERT  # reads MMF's older ViLBERT checkpoints (format_state_key)

    def build_backbone(self) -> nn.Module:
        return build_vilbert_backbone(self.config, self.model_name())

    def feature_sizes(self):
        pooled = int(self.config.bi_hidden_size)
        return [pooled, pooled], {"text": pooled, "image": pooled}

    def pre_fusion(self, sample_list):
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
        return [pooled_text, pooled_image], {"text": pooled_text, "image": pooled_image}
