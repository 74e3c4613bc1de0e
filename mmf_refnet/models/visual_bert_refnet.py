"""``visual_bert_refnet``: MMF's VisualBERT under the ReFNet head.

VisualBERT is single-stream: one transformer attends over the text tokens and the
projected image regions together, so every layer's output is already fused.
The last point where the modalities are apart is the embedding layer (word +
position + segment embeddings of the text; projected region features + visual
position/segment embeddings of the image, LayerNorm'ed). ReFNet's pieces:

- refiner targets (pre-fusion features F_i): the masked mean of the embedding
  layer's text positions and of its image positions;
- fusion inputs: the masked means of the last layer's text positions and image
  positions, concatenated by the head (as ViLBERT's two pooled streams are).

The backbone is rc10's ``VisualBERTBase`` at ``model.bert`` (MMF's visual_bert
checkpoints map with ``model.bert: model.bert``); its pooler is not used. The
forward composes the embedding layer's parts and the encoder itself (rc10's
``VisualBERTBase.forward`` and embedding forward create tensors with
``.cuda()`` and return no embedding output).
"""


import torch
from mmf.common.registry import registry
from mmf.models.visual_bert import VisualBERT, VisualBERTBase

from mmf_refnet.models.base import ReFNetModel
from mmf_refnet.modules.bert_backbones import additive_mask, masked_mean, pretrained_or_random, region_mask


@registry.register_model("visual_bert_refnet")
class VisualBERTReFNet(ReFNetModel):
    """VisualBERT + the ReFNet head (MS loss on by default, ζ = ``ms_loss.weight``);
    see the module docstring for what is fused and refined."""

    CONFIG = "visual_bert_refnet.yaml"
    MMF_MODEL = VisualBERT  # reads MMF's older VisualBERT checkpoints (format_state_key)

    def build_backbone(self):
        backbone = pretrained_or_random(VisualBERTBase, self.config, self.model_name(),
                                        visual_embedding_dim=int(self.config.visual_embedding_dim),
                                        embedding_strategy=self.config.embedding_strategy)
        if self.config.special_visual_initialize:  # visual position/segment tables start as the text ones
            backbone.embeddings.initialize_visual_from_pretrained()
        return backbone

    def feature_sizes(self):
        hidden = int(self.config.hidden_size)
        return [hidden, hidden], {"text": hidden, "image": hidden}

    def embed(self, sample_list):
        """The embedding layer per modality, before the LayerNorm of the joint sequence: (text, image)."""
        embeddings = self.model.bert.embeddings
        input_ids, segment_ids = sample_list.input_ids, sample_list.segment_ids
        positions = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
        text = (embeddings.word_embeddings(input_ids) + embeddings.position_embeddings(positions)
                + embeddings.token_type_embeddings(segment_ids))
        features = sample_list.image_feature_0
        visual_ids = torch.zeros(features.shape[:2], dtype=torch.long, device=features.device)
        image = (embeddings.projection(features) + embeddings.position_embeddings_visual(visual_ids)
                 + embeddings.token_type_embeddings_visual(visual_ids))
        return text, image

    def pre_fusion(self, sample_list):
        bert = self.model.bert
        text, image = self.embed(sample_list)
        text_mask = sample_list.input_mask
        image_mask = region_mask(sample_list.image_feature_0, sample_list.get("image_info_0"))
        embedded = bert.embeddings.LayerNorm(torch.cat([text, image], dim=1))
        mask = torch.cat([text_mask, image_mask], dim=1)
        hidden = bert.encoder(bert.embeddings.dropout(embedded), attention_mask=additive_mask(mask, embedded.dtype))[0]
        length = text.size(1)
        fusion_inputs = [masked_mean(hidden[:, :length], text_mask), masked_mean(hidden[:, length:], image_mask)]
        targets = {"text": masked_mean(embedded[:, :length], text_mask),
                   "image": masked_mean(embedded[:, length:], image_mask)}
        return fusion_inputs, targets
