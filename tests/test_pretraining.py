"""Refiner pretraining as paper Alg. 1 has it: the backbone frozen (no gradient, not in the
optimizer, no dropout), the fusion and refiner trained; fine-tuning trains everything."""

import os

import torch

from tests import inprocess, replicas, runner

HEAD = ("model.fusion.", "model.fusion_norm.", "model.refiner.")


def _modes(model):
    """{submodule name: training flag} for the backbone and the head."""
    return {name: module.training for name, module in model.named_modules() if name.startswith(("model.bert", *HEAD))}


def test_frozen_backbone_stays_in_eval_mode_and_out_of_the_optimizer(tmp_path):
    from mmf.utils.build import build_optimizer

    config = inprocess.configuration(tmp_path, "refnet", opts=["model_config.refnet.freeze_base=True"])
    model = inprocess.build(config, "refnet")
    for _ in range(2):  # rc10: model.train() at the start and after every evaluation (model.eval())
        model.train()
        modes = _modes(model)
        backbone = [name for name in modes if name.startswith("model.bert")]
        assert len(backbone) > 10 and not any(modes[name] for name in backbone)
        assert all(training for name, training in modes.items() if not name.startswith("model.bert"))
        model.eval()
        assert not any(_modes(model).values())
    in_optimizer = {id(p) for group in build_optimizer(model, config).param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert not any(id(p) in in_optimizer or p.requires_grad for n, p in named.items() if n.startswith("model.bert."))
    assert all(id(p) in in_optimizer for n, p in named.items() if not n.startswith("model.bert."))


def test_unfrozen_backbone_trains_in_train_mode(tmp_path):
    from mmf.utils.build import build_optimizer

    config = inprocess.configuration(tmp_path, "refnet")
    model = inprocess.build(config, "refnet")
    model.train()
    assert all(_modes(model).values())
    in_optimizer = {id(p) for group in build_optimizer(model, config).param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in model.model.bert.parameters())


def _weights(path):
    state = torch.load(path, map_location="cpu")
    return state.get("model", state)


def _equal(first, second, prefixes):
    keys = [key for key in first if key.startswith(prefixes)]
    assert keys, prefixes
    return all(torch.equal(first[key], second[key]) for key in keys)


def test_pretraining_run_changes_fusion_and_refiner_only(tmp_path):
    data = str(tmp_path / "data")
    replicas.hateful_memes(data, sizes=(48, 16, 8))
    pretrain = runner.tiny_config(str(tmp_path / "cfg"), "hateful_memes", "refnet", {
        "includes": [os.path.join(runner.PROJECT_CONFIGS, "hateful_memes", "pretrain.yaml")],
        "training": {"max_updates": 6, "checkpoint_interval": 3, "evaluation_interval": 3}})

    def run(name, *opts):
        runner.run_mmf("mmf_run", pretrain, data, str(tmp_path / name), "run_type=train", *opts)
        return str(tmp_path / name)

    initial = _weights(os.path.join(run("initial", "optimizer.params.lr=0.0", "training.max_updates=1"),
                                    "refnet_final.pth"))  # the seeded model before any update
    frozen = run("frozen")
    at_3, at_6 = (_weights(os.path.join(frozen, "models", f"model_{n}.ckpt")) for n in (3, 6))
    final = _weights(os.path.join(frozen, "refnet_final.pth"))
    backbone = ("model.bert.",)
    assert _equal(initial, at_3, backbone) and _equal(at_3, at_6, backbone) and _equal(at_6, final, backbone)
    for part in HEAD[::2]:  # fusion layer and refiner learn at every stage (the LayerNorm's change is too small to count on)
        assert not _equal(initial, at_3, (part,)) and not _equal(at_3, at_6, (part,)), part
    # only the trainable parameters are in the optimizer
    optimizer = torch.load(os.path.join(frozen, "models", "model_6.ckpt"), map_location="cpu")["optimizer"]
    head_parameters = dict(inprocess.build(inprocess.configuration(tmp_path / "c", "refnet"), "refnet")
                           .named_parameters())
    trainable = [name for name in head_parameters if not name.startswith("model.bert.")]
    assert sum(len(group["params"]) for group in optimizer["param_groups"]) == len(trainable)
    # the control: without freeze_base the same run moves the backbone
    unfrozen = _weights(os.path.join(run("unfrozen", "model_config.refnet.freeze_base=False"), "refnet_final.pth"))
    assert not _equal(initial, unfrozen, backbone)
