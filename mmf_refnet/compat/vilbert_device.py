"""rc10's ViLBERT hard-codes ``.cuda()`` while preparing inputs
(``get_image_and_text_features`` and the image mask in ``forward``), so it cannot
run on CPU (``Torch not compiled with CUDA enabled``), and with
``training.device=cpu`` on a GPU machine its tensors silently go to the GPU.

``ViLBERT.get_image_and_text_features`` and ``ViLBERT.forward`` are replaced by
versions that build every input with torch on the batch's device
(``mmf_refnet.modules.vilbert_inputs``); the model code itself is unchanged.

``ViLBERTBase.forward`` likewise builds its default masks on the CPU: the
co-attention mask (B × regions × tokens zeros, which no layer reads) every step,
and the image mask when none is given, then copies them to the GPU. That is a
blocking host-to-device copy per step, and a CPU op that keeps a compiled
model's graph from being captured as a CUDA graph. Callers that pass no such
mask now get one made on the inputs' device (``DEVICE_MASKS``, read at call
time; benchmarks turn it off to time rc10's stock step).
"""

import torch

from mmf_refnet.modules import vilbert_inputs

DEVICE_MASKS = True


def _batch_device(sample_list) -> torch.device:
    return sample_list.input_ids.device


def get_image_and_text_features(self, sample_list):
    device = _batch_device(sample_list)
    pretraining = self.config.training_head_type == "pretraining"
    params = vilbert_inputs.text_inputs(sample_list)
    if sample_list.dataset_name == "nlvr2":
        first = vilbert_inputs.image_inputs(sample_list.img0, device)
        second = vilbert_inputs.image_inputs(sample_list.img1, device)
        images = {key: _cat_or_none(first[key], second[key]) for key in first}
        params = {key: torch.cat([value, value]) for key, value in params.items()}
    else:
        images = vilbert_inputs.image_inputs(sample_list, device, with_cls_prob=pretraining)
    image_labels = getattr(sample_list, "image_labels", None)
    if image_labels is not None:
        image_labels = torch.as_tensor(image_labels, dtype=torch.long).to(device)
    params.update(images)
    params["image_label"] = image_labels
    return params


def _cat_or_none(first, second):
    if first is None or second is None:
        return None
    return torch.cat([first, second])


def forward(self, sample_list):
    params = self.get_image_and_text_features(sample_list)
    output = self.model(
        params["input_ids"],
        params["image_feature"],
        params["image_location"],
        params["token_type_ids"],
        params["attention_mask"],
        params["image_attention_mask"],
        getattr(sample_list, "lm_label_ids", None),
        params["image_label"],
        params["image_target"],
    )
    if self.config.training_head_type == "pretraining":
        prefix = f"{sample_list.dataset_name}/{sample_list.dataset_type}"
        output["losses"] = {
            f"{prefix}/masked_lm_loss": output.pop("masked_lm_loss"),
            f"{prefix}/masked_img_loss": output.pop("masked_img_loss"),
        }
    return output


def _masks_on_device(original):
    def base_forward(self, input_txt, image_feature, image_location, token_type_ids=None, attention_mask=None,
                     image_attention_mask=None, co_attention_mask=None, *args, **kwargs):
        if DEVICE_MASKS and image_attention_mask is None:
            image_attention_mask = input_txt.new_ones(image_feature.shape[:2])
        if DEVICE_MASKS and co_attention_mask is None:
            co_attention_mask = image_feature.new_zeros(input_txt.size(0), image_feature.size(1), input_txt.size(1))
        return original(self, input_txt, image_feature, image_location, token_type_ids, attention_mask,
                        image_attention_mask, co_attention_mask, *args, **kwargs)

    base_forward.__wrapped__ = original
    return base_forward


def apply() -> None:
    from mmf.models.vilbert import ViLBERT, ViLBERTBase

    ViLBERT.get_image_and_text_features = get_image_and_text_features
    ViLBERT.forward = forward
    if not hasattr(ViLBERTBase.forward, "__wrapped__"):
        ViLBERTBase.forward = _masks_on_device(ViLBERTBase.forward)
