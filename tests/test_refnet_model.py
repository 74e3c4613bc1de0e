"""refnet/refnet_ms specifics in-process: optimizer groups, no host sync, older checkpoints, loss switches
(what every ReFNet backbone shares: test_refnet_backbones.py)."""

import pytest
import torch

from tests import inprocess


@pytest.fixture(scope="module")
def refnet_ms(tmp_path_factory):
    config = inprocess.configuration(tmp_path_factory.mktemp("cfg"), "refnet_ms")
    return config, inprocess.build(config, "refnet_ms")


def test_every_trainable_parameter_is_in_the_optimizer(refnet_ms):
    config, model = refnet_ms
    from mmf.utils.build import build_optimizer

    optimizer = build_optimizer(model, config)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in in_optimizer]
    assert not missing
    assert len(in_optimizer) == len([p for p in model.parameters() if p.requires_grad])
    # one group per setting: backbone and head share lr here, so decay / no decay; the head's
    # biases (the refiner's stacked ones are 2-d) and its LayerNorm never decay (the backbone keeps rc10's rule)
    assert len(optimizer.param_groups) == 2 == sum(len(group["params"]) > 0 for group in optimizer.param_groups)
    decay = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert optimizer.param_groups[0]["weight_decay"] > 0 == optimizer.param_groups[1]["weight_decay"]
    head = {name: id(p) in decay for name, p in model.named_parameters() if not name.startswith("model.bert.")}
    assert head == {"model.fusion_norm.weight": False, "model.fusion_norm.bias": False,
                    "model.fusion.weight": True, "model.fusion.bias": False,
                    "model.classifier.0.weight": True, "model.classifier.0.bias": False,
                    "model.classifier.3.weight": True, "model.classifier.3.bias": False,
                    "model.refiner.decoders.hidden.weight": True, "model.refiner.decoders.hidden.bias": False,
                    "model.refiner.decoders.output.weight": True, "model.refiner.decoders.output.bias": False}


def test_backbone_lr_multiplier_gives_its_own_groups(tmp_path):
    from mmf.utils.build import build_optimizer

    config = inprocess.configuration(tmp_path, "refnet_ms", opts=["model_config.refnet_ms.finetune_lr_multiplier=0.1"])
    model = inprocess.build(config, "refnet_ms")
    groups = build_optimizer(model, config).param_groups
    lr = config.optimizer.params.lr
    settings = sorted((round(group["lr"] / lr, 6), group["weight_decay"]) for group in groups)
    assert settings == [(0.1, 0.0), (0.1, 0.01), (1.0, 0.0), (1.0, 0.01)]
    head = {id(p) for part in (model.model.fusion, model.model.classifier, model.model.refiner) for p in part.parameters()}
    assert all(group["lr"] == lr for group in groups for p in group["params"] if id(p) in head)


SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2")  # .item(), data-dependent sizes


def test_training_forward_and_backward_never_wait_for_the_device(refnet_ms):
    """No op whose result size or value the host must read (a GPU sync) in refnet_ms's step, all rows labeled."""
    _, model = refnet_ms
    sample_list = inprocess.batch(size=8)
    recorder = inprocess.OpRecorder()
    with recorder:
        output = model(sample_list)
        sum(loss.sum() for loss in output["losses"].values()).backward()
    model.zero_grad(set_to_none=True)
    assert "mm" in recorder.names and "logsumexp" in recorder.names  # the dispatch mode saw the step
    assert [name for name in recorder.names if name in SYNCING_OPS] == []
    sample_list.labeled = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    with recorder:
        model(sample_list)
    assert "nonzero" in recorder.names  # the check would see a sync: label_fraction batches select rows


def test_checkpoint_of_per_modality_decoders_loads(refnet_ms):
    """Checkpoints before the decoders were stacked (``decoders.<modality>.{0,3}.*``, nn.Linear
    layout) load into the stacked decoders, strictly, with the same outputs."""
    config, model = refnet_ms
    model.eval()
    state = model.state_dict()
    decoders = model.model.refiner.decoders
    old_layout = {key: value for key, value in state.items() if not key.startswith("model.refiner.decoders.")}
    for index, modality in enumerate(decoders.modalities):
        for number, layer in (("0", decoders.hidden), ("3", decoders.output)):
            old_layout[f"model.refiner.decoders.{modality}.{number}.weight"] = layer.weight[index].detach().t().clone()
            old_layout[f"model.refiner.decoders.{modality}.{number}.bias"] = layer.bias[index].detach().clone()
    fresh = inprocess.build(config, "refnet_ms").eval()
    fresh.load_state_dict(old_layout)  # strict: every stacked key was filled
    sample_list = inprocess.batch()
    with torch.no_grad():
        expected, got = model(sample_list), fresh(sample_list)
    assert torch.equal(got["scores"], expected["scores"])
    for key, value in expected["losses"].items():
        assert torch.equal(got["losses"][key], value), key
    model.train()


def test_to_and_eval_reach_the_refiner(refnet_ms):
    _, model = refnet_ms
    model.eval()
    assert all(not m.training for m in model.model.refiner.modules())
    model.train()
    assert all(m.training for m in model.model.refiner.modules())
    model.to(torch.float64)
    assert model.model.refiner.decoders.hidden.weight.dtype == torch.float64
    model.to(torch.float32)


def test_without_targets_only_refiner_losses(refnet_ms):
    _, model = refnet_ms
    output = model(inprocess.batch(targets=False, dataset_type="test"))
    assert set(output["losses"]) == {"test/hateful_memes/refiner_text", "test/hateful_memes/refiner_image"}


def test_backbone_returning_seven_outputs_works(refnet_ms):
    _, model = refnet_ms
    backbone = model.model.bert
    original = backbone.forward

    def seven(*args, **kwargs):
        out = original(*args, **kwargs)
        return (out[0], out[1], out[2], out[3], None, None, None)

    sample_list = inprocess.batch()
    model.eval()
    with torch.no_grad():
        five = model(sample_list)["scores"]
        backbone.forward = seven
        try:
            seventh = model(sample_list)["scores"]
        finally:
            backbone.forward = original
    model.train()
    assert torch.equal(five, seventh)


def test_fixed_random_target_map_is_saved_and_not_trained(tmp_path):
    config = inprocess.configuration(
        tmp_path, "refnet", opts=["model_config.refnet.refiner.target_map=fixed_random", "model_config.refnet.refiner.dim=8"]
    )
    model = inprocess.build(config, "refnet")
    projection = model.model.refiner.target_maps["text"]
    assert projection.weight.shape == (8, 32)
    assert "model.refiner.target_maps.text.weight" in model.state_dict()
    assert not any("target_maps" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(projection.weight @ projection.weight.t(), torch.eye(8), atol=1e-5, rtol=0)
    output = model(inprocess.batch())
    assert output["losses"]["train/hateful_memes/refiner_text"].item() > 0


def test_refnet_has_no_ms_loss_by_default(tmp_path):
    config = inprocess.configuration(tmp_path, "refnet")
    model = inprocess.build(config, "refnet")
    assert "train/hateful_memes/ms_loss" not in model(inprocess.batch())["losses"]


def test_registered_losses_work_for_other_models_by_config():
    """``refnet_refiner`` and ``refnet_multi_similarity`` as MMF losses (any model's ``losses:``) on stacked outputs."""
    from mmf.modules.losses import Losses

    from mmf_refnet.losses import MultiSimilarity, refiner_terms

    losses = Losses([{"type": "refnet_refiner", "params": {"modality": "text", "weight": 0.2}},
                     {"type": "refnet_refiner", "params": {"modality": "image", "weight": 0.3}},
                     {"type": "refnet_multi_similarity", "params": {"weight": 0.5, "miner_epsilon": None}}])
    torch.manual_seed(0)
    outputs, targets, fused = torch.randn(2, 6, 4), torch.randn(2, 6, 4), torch.randn(6, 5)
    sample_list = inprocess.batch(size=6)
    model_output = {"refiner_outputs": outputs, "refiner_targets": targets, "refiner_modalities": ("text", "image"),
                    "fused_embedding": fused}
    values = losses(sample_list, model_output)
    expected = refiner_terms(outputs, targets, {"text": 0.2, "image": 0.3})
    assert values["train/hateful_memes/refnet_refiner"].item() == pytest.approx(expected["image"].item(), rel=1e-6)
    assert len(model_output["refiner_distances"]) == 2  # one batched cosine for both modalities
    expected_ms = 0.5 * MultiSimilarity(miner_epsilon=None)(fused, sample_list.targets)
    assert values["train/hateful_memes/refnet_multi_similarity"].item() == pytest.approx(expected_ms.item(), rel=1e-6)


def test_a_zero_weight_switches_a_term_off(tmp_path):
    opts = ["model_config.refnet_ms.ms_loss.weight=0", "model_config.refnet_ms.refiner.weights.image=0"]
    config = inprocess.configuration(tmp_path, "refnet_ms", opts=opts)
    losses = inprocess.build(config, "refnet_ms")(inprocess.batch())["losses"]
    assert set(losses) == {"train/hateful_memes/cross_entropy", "train/hateful_memes/refiner_text"}
    opts = ["model_config.refnet.refiner.weights.text=0", "model_config.refnet.refiner.weights.image=0"]
    config = inprocess.configuration(tmp_path, "refnet", opts=opts)
    output = inprocess.build(config, "refnet")(inprocess.batch())
    assert set(output["losses"]) == {"train/hateful_memes/cross_entropy"}
    assert "refiner_outputs" not in output  # nothing reads the decoders: not run


def test_pretraining_runs_the_refiner_losses_only(tmp_path):
    config = inprocess.configuration(tmp_path, "refnet_ms", opts=["model_config.refnet_ms.pretrain_refiner=True"])
    losses = inprocess.build(config, "refnet_ms")(inprocess.batch())["losses"]
    assert set(losses) == {"train/hateful_memes/refiner_text", "train/hateful_memes/refiner_image"}
