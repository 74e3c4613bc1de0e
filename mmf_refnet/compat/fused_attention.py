"""rc10's ViLBERT writes every attention out by hand (``BertSelfAttention``,
``BertImageSelfAttention``, ``BertBiAttention``: matmul → ÷√d → + mask → softmax →
dropout → matmul → permute/contiguous), about 20 dispatched ops forward and as
many backward per attention. A ViLBERT-base step at batch 32 on an H100 is bound
by those launches. torch's ``scaled_dot_product_attention`` computes the same
(scale 1/√d, additive mask, dropout on the probabilities) in one fused CUDA
kernel forward and one backward.

The replacement forwards use each module's own layers and return what rc10's
return; they defer to rc10's code when attention maps are asked for
(``visualization``) and for ``dynamic_attention`` (text-gated image queries).
Results equal rc10's up to float rounding in eval; in training the dropout
masks are drawn differently (same distribution).

Only for tensors on ``DEVICE_TYPES`` (CUDA): on the CPU, SDPA with dropout runs
its unfused math path, which was slower than rc10's code under bf16 autocast
(benchmarks/RESULTS.md). ``ENABLED`` and ``DEVICE_TYPES`` are read
at call time (benchmarks time rc10's stock step with ``ENABLED`` off; tests add
"cpu").
"""

import torch.nn.functional as F

ENABLED = True
DEVICE_TYPES = {"cuda"}


def _use_fused(module, states) -> bool:
    return ENABLED and states.device.type in DEVICE_TYPES and not module.visualization


def _heads(module, states):
    """(B, L, heads · d) → (B, heads, L, d)."""
    return states.view(*states.shape[:-1], module.num_attention_heads, module.attention_head_size).transpose(1, 2)


def attend(module, query, key, value, mask, dropout):
    """Multi-head attention of projected ``query`` over ``key``/``value``; (B, Lq, heads · d)."""
    query, key, value = _heads(module, query), _heads(module, key), _heads(module, value)
    if mask is not None and mask.is_floating_point() and mask.dtype != query.dtype:
        mask = mask.to(query.dtype)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                             dropout_p=dropout.p if module.training else 0.0)
    return context.transpose(1, 2).reshape(context.size(0), context.size(2), module.all_head_size)


def _self_attention(original):
    def forward(self, hidden_states, attention_mask):
        if not _use_fused(self, hidden_states):
            return original(self, hidden_states, attention_mask)
        context = attend(self, self.query(hidden_states), self.key(hidden_states), self.value(hidden_states),
                         attention_mask, self.dropout)
        return context, None

    return forward


def _image_self_attention(original):
    def forward(self, hidden_states, attention_mask, txt_embedding, txt_attention_mask):
        if not _use_fused(self, hidden_states) or self.dynamic_attention:
            return original(self, hidden_states, attention_mask, txt_embedding, txt_attention_mask)
        context = attend(self, self.query(hidden_states), self.key(hidden_states), self.value(hidden_states),
                         attention_mask, self.dropout)
        return context, None

    return forward


def _bi_attention(original):
    def forward(self, input_tensor1, attention_mask1, input_tensor2, attention_mask2, co_attention_mask=None,
                use_co_attention_mask=False):
        if not _use_fused(self, input_tensor1):
            return original(self, input_tensor1, attention_mask1, input_tensor2, attention_mask2, co_attention_mask,
                            use_co_attention_mask)
        # stream 1 (image) is attended by the text queries and vice versa, as in rc10
        context1 = attend(self, self.query2(input_tensor2), self.key1(input_tensor1), self.value1(input_tensor1),
                          attention_mask1, self.dropout1)
        context2 = attend(self, self.query1(input_tensor1), self.key2(input_tensor2), self.value2(input_tensor2),
                          attention_mask2, self.dropout2)
        return context1, context2, None

    return forward


def apply() -> None:
    from mmf.models import vilbert

    for cls, make in ((vilbert.BertSelfAttention, _self_attention), (vilbert.BertImageSelfAttention, _image_self_attention),
                      (vilbert.BertBiAttention, _bi_attention)):
        if hasattr(cls.forward, "__wrapped__"):
            continue
        forward = make(cls.forward)
        forward.__wrapped__ = cls.forward
        cls.forward = forward
