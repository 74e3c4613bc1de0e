"""``mmbt_refnet``: MMF's MMBT under the ReFNet head.

MMBT is single-stream: an image encoder's outputs are projected into BERT's
embedding space as extra tokens (between the text's [CLS] and [SEP] tokens when
``use_modal_start_token``/``use_modal_end_token``) and one BERT attends over
them and the text. ReFNet's pieces:

- refiner targets (pre-fusion features F_i): for the image, the masked mean of
  the image encoder's outputs (``modal_hidden_size``, e.g. 2048-d region
  features); for the text, the masked mean of BERT's text embeddings (word +
  position + segment, LayerNorm'ed). They differ in size, so the default
  ``refiner.target_map`` is ``fixed_random`` (both projected to the smaller size);
- fusion inputs: the masked means of the last layer's text positions and image
  positions, concatenated by the head.

The backbone is rc10's ``MMBTModel`` at ``model.bert.mmbt`` (the layout of MMF's
mmbt checkpoints: ``model.bert: model.bert`` maps them), built from a
transformers ``BertModel`` and rc10's feature encoders (``modal_encoder``:
``default`` = identity on region features, ``projection``, ...); images are read
as ``image_feature_0``. The forward composes rc10's modal embeddings, the text
embeddings and the encoder itself, to keep each modality's pre-fusion output.
"""


import torch
from mmf.common.registry import registry
from mmf.models.mmbt import MMBT, MMBTConfig, MMBTModel
from mmf.utils.build import build_image_encoder
from torch import nn
from transformers.models.bert.modeling_bert import BertModel

from mmf_refnet.models.base import ReFNetModel
from mmf_refnet.modules.bert_backbones import additive_mask, masked_mean, pretrained_or_random, region_mask


@registry.register_model("mmbt_refnet")
class MMBTReFNet(ReFNetModel):
    """MMBT + the ReFNet head (MS loss on by default, ζ = ``ms_loss.weight``)."""

    CONFIG = "mmbt_refnet.yaml"
    MMF_MODEL = MMBT  # reads MMF's older MMBT checkpoints (format_state_key)

    def build_backbone(self):
        config = self.config
        if not config.direct_features_input:
            raise ValueError(f"model_config.{self.model_name()}.direct_features_input must be true: mmbt_refnet reads "
                             "region features (image_feature_0); extract them with `refnet extract-features`")
        text = pretrained_or_random(BertModel, config, self.model_name())
        image_encoder = build_image_encoder(config.modal_encoder, direct_features=True)
        settings = MMBTConfig(text.config, num_labels=int(config.num_labels),
                              modal_hidden_size=int(config.modal_hidden_size))
        backbone = nn.Module()
        backbone.mmbt = MMBTModel(settings, text, image_encoder)
        return backbone

    def feature_sizes(self):
        hidden = int(self.config.hidden_size)
        return [hidden, hidden], {"text": hidden, "image": int(self.config.modal_hidden_size)}

    def modal_tokens(self, sample_list):
        """(image encoder output, image token embeddings, their mask, where the regions start)."""
        modal = self.model.bert.mmbt.modal_encoder
        features = sample_list.image_feature_0
        start = sample_list.input_ids[:, 0] if self.config.use_modal_start_token else None
        end = sample_list.input_ids[:, -1] if self.config.use_modal_end_token else None
        tokens = modal(features, start_token=start, end_token=end)
        regions = region_mask(features, sample_list.get("image_info_0"))
        ones = regions.new_ones(regions.size(0), 1)
        mask = torch.cat([ones] * (start is not None) + [regions] + [ones] * (end is not None), dim=1)
        return modal.encoder(features), tokens, mask, int(start is not None)

    def pre_fusion(self, sample_list):
        transformer = self.model.bert.mmbt.transformer
        encoded_image, image_tokens, image_mask, first_region = self.modal_tokens(sample_list)
        text = transformer.embeddings(input_ids=sample_list.input_ids, token_type_ids=sample_list.segment_ids)
        text_mask = sample_list.input_mask
        mask = torch.cat([image_mask, text_mask], dim=1)
        sequence = torch.cat([image_tokens, text], dim=1)
        hidden = transformer.encoder(sequence, attention_mask=additive_mask(mask, sequence.dtype))[0]
        regions = slice(first_region, first_region + encoded_image.size(1))
        length = image_tokens.size(1)
        region_valid = image_mask[:, regions]
        fusion_inputs = [masked_mean(hidden[:, length:], text_mask), masked_mean(hidden[:, regions], region_valid)]
        targets = {"text": masked_mean(text, text_mask), "image": masked_mean(encoded_image, region_valid)}
        return fusion_inputs, targets
