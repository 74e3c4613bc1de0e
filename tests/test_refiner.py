"""The refiner's decoders: all modalities in one batched MLP, equal to one MLP per modality."""

import math

import pytest
import torch
from torch import nn

from mmf_refnet.modules.refiner import Decoders
from tests.inprocess import OpRecorder

MODALITIES = ("text", "image", "audio")


def per_modality_reference(decoders: Decoders) -> dict:
    """One ``Linear → GELU → Dropout → Linear`` per modality holding the stacked parameters."""
    reference = {}
    for index, modality in enumerate(decoders.modalities):
        first = nn.Linear(decoders.hidden.in_features, decoders.hidden.out_features)
        second = nn.Linear(decoders.output.in_features, decoders.output.out_features)
        with torch.no_grad():
            for linear, stacked in ((first, decoders.hidden), (second, decoders.output)):
                linear.weight.copy_(stacked.weight[index].t())
                linear.bias.copy_(stacked.bias[index])
        reference[modality] = nn.Sequential(first, nn.GELU(), nn.Dropout(0.0), second)
    return reference


def test_stacked_decoders_equal_one_mlp_per_modality_with_gradients():
    torch.manual_seed(0)
    decoders = Decoders(MODALITIES, 6, 5, 4, dropout=0.0)
    reference = per_modality_reference(decoders)
    fused = torch.randn(7, 6, requires_grad=True)
    out = decoders(fused)
    assert out.shape == (3, 7, 4)
    weights = torch.randn(3, 7, 4)
    (grad_stacked,) = torch.autograd.grad((out * weights).sum(), fused)
    expected = [reference[m](fused) for m in MODALITIES]
    (grad_reference,) = torch.autograd.grad(sum((e * w).sum() for e, w in zip(expected, weights)), fused)
    for index, modality in enumerate(MODALITIES):
        torch.testing.assert_close(out[index], expected[index])
        torch.testing.assert_close(decoders.decoder(modality)(fused), expected[index])
    torch.testing.assert_close(grad_stacked, grad_reference)


def test_all_modalities_in_one_matmul_per_layer():
    """Forward: 2 matmul kernels for 3 modalities (one MLP per modality launches 6)."""
    decoders = Decoders(MODALITIES, 6, 5, 4, dropout=0.1)
    recorder = OpRecorder()
    with recorder:
        decoders(torch.randn(7, 6))
    matmuls = [name for name in recorder.names if name in ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear")]
    assert matmuls == ["baddbmm", "baddbmm"]
    assert recorder.names.count("bernoulli_") == 1  # one dropout draw for all modalities


def test_initialisation_is_nn_linears_per_modality():
    torch.manual_seed(0)
    decoders = Decoders(MODALITIES, 64, 32, 16, dropout=0.1)
    for layer in (decoders.hidden, decoders.output):
        bound = 1 / math.sqrt(layer.in_features)
        for tensor in (layer.weight, layer.bias):
            assert tensor.abs().max() <= bound
            assert tensor.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)  # U(±b): std b/√3
        assert not torch.equal(layer.weight[0], layer.weight[1])  # each modality its own draw


def test_decoders_follow_autocast_like_linear_layers():
    decoders = Decoders(MODALITIES, 6, 5, 4, dropout=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert decoders(torch.randn(7, 6)).dtype == torch.bfloat16


def test_whole_checkpoint_upgrade_finds_per_modality_keys_under_any_prefix():
    """``upgrade_state_dict`` (rc10's pretrained-mapping path) converts e.g. DDP's ``module.`` keys and leaves others."""
    torch.manual_seed(0)
    decoders = Decoders(MODALITIES, 6, 5, 4, dropout=0.0)
    reference = per_modality_reference(decoders)
    state = {f"module.model.refiner.decoders.{m}.{key}": value for m in MODALITIES
             for key, value in reference[m].state_dict().items()}
    state["module.model.fusion.weight"] = torch.ones(2)
    decoders.upgrade_state_dict(state)
    assert sorted(state) == ["module.model.fusion.weight"] + [
        f"module.model.refiner.decoders.{layer}.{name}" for layer in ("hidden", "output") for name in ("bias", "weight")]
    torch.testing.assert_close(state["module.model.refiner.decoders.hidden.weight"], decoders.hidden.weight.detach())
    torch.testing.assert_close(state["module.model.refiner.decoders.output.bias"], decoders.output.bias.detach())
