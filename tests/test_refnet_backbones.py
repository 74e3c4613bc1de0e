"""Every ReFNet backbone in-process: outputs and losses, the refiner loss's value, where its
gradients go, checkpoints, optimizer coverage (refnet-specific checks: test_refnet_model.py)."""

import pytest
import torch
import torch.nn.functional as F

from tests import inprocess

MODELS = ("refnet_ms", "visual_bert_refnet", "mmbt_refnet")
TINY_SIZES = {"refnet_ms": (32, 32), "visual_bert_refnet": (32, 32), "mmbt_refnet": (32, 16)}  # (text, image) targets


@pytest.fixture(scope="module", params=MODELS)
def built(request, tmp_path_factory):
    config = inprocess.configuration(tmp_path_factory.mktemp("cfg"), request.param)
    return request.param, config, inprocess.build(config, request.param)


def test_outputs_are_what_the_losses_read(built):
    name, _, model = built
    output = model(inprocess.batch())
    assert output["scores"].shape == (6, 2) and output["fused_embedding"].shape == (6, 16)
    assert output["refiner_modalities"] == ("text", "image")
    dim = min(TINY_SIZES[name]) if name == "mmbt_refnet" else TINY_SIZES[name][0]  # mmbt: fixed_random to the smaller
    assert output["refiner_outputs"].shape == output["refiner_targets"].shape == (2, 6, dim)
    assert set(output["losses"]) == {f"train/hateful_memes/{term}"
                                     for term in ("cross_entropy", "refiner_text", "refiner_image", "ms_loss")}
    assert all(value.shape == (1,) and torch.isfinite(value).all() for value in output["losses"].values())


def test_refiner_losses_equal_the_formula_on_the_pre_fusion_features(built):
    name, _, model = built
    model.eval()
    sample_list = inprocess.batch()
    with torch.no_grad():
        _, features = model.pre_fusion(sample_list)
        assert {m: features[m].shape[-1] for m in ("text", "image")} == dict(zip(("text", "image"), TINY_SIZES[name]))
        output = model(sample_list)
        refiner = model.model.refiner
        for modality in ("text", "image"):
            decoded = refiner.decoders.decoder(modality)(output["fused_embedding"])
            target = refiner.target_maps[modality](features[modality])
            expected = 0.1 * (1 - F.cosine_similarity(decoded, target, dim=-1)).mean()
            got = output["losses"][f"train/hateful_memes/refiner_{modality}"]
            assert got.item() == pytest.approx(expected.item(), rel=1e-5), modality
    model.train()


def test_refiner_gradients_reach_decoders_fusion_and_backbone(built):
    _, _, model = built
    model.zero_grad()
    model(inprocess.batch())["losses"]["train/hateful_memes/refiner_image"].sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}

    def touched(prefix, index=None):  # index: the modality's slice of the refiner's stacked parameters
        return any(g is not None and (g if index is None else g[index]).abs().sum() > 0
                   for n, g in grads.items() if n.startswith(prefix))

    assert touched("model.refiner.decoders.", 1) and not touched("model.refiner.decoders.", 0)
    assert touched("model.fusion.") and touched("model.bert.")
    assert not touched("model.classifier.")
    model.zero_grad()


def test_checkpoint_round_trip(built, tmp_path):
    name, config, model = built
    model.eval()
    torch.save(model.state_dict(), tmp_path / "model.pth")
    fresh = inprocess.build(config, name).eval()
    sample_list = inprocess.batch()
    with torch.no_grad():
        expected = model(sample_list)
        assert not torch.equal(fresh(sample_list)["scores"], expected["scores"])  # a fresh build differs
        fresh.load_state_dict(torch.load(tmp_path / "model.pth"))  # strict: same keys
        got = fresh(sample_list)
    for key in ("scores", "refiner_outputs", "refiner_targets"):
        assert torch.equal(got[key], expected[key]), key
    model.train()


def test_every_trainable_parameter_is_in_the_optimizer(built):
    _, config, model = built
    from mmf.utils.build import build_optimizer

    optimizer = build_optimizer(model, config)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in model.parameters() if p.requires_grad} == in_optimizer
