"""Reduced-label training and refiner pretraining (issue: paper Alg. 1, Tables 3-4)."""

import json
import os
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from mmf_refnet.data.label_fraction import select_labeled
from mmf_refnet.losses import MultiSimilarity
from tests import inprocess, replicas, runner


def test_selection_is_deterministic_per_seed_and_stratified():
    labels = [0] * 80 + [1] * 20 + [None] * 5
    first = select_labeled(labels, 0.1, seed=3)
    assert first == select_labeled(labels, 0.1, seed=3)
    assert first != select_labeled(labels, 0.1, seed=4)
    kept = Counter(label for label, keep in zip(labels, first) if keep)
    assert kept == {0: 8, 1: 2}  # 10 % of each class
    assert not any(first[100:])  # unlabeled rows never count as labeled


def test_rare_classes_keep_at_least_one_label_and_full_fraction_keeps_all():
    labels = [0] * 200 + [1] * 3
    kept = Counter(label for label, keep in zip(labels, select_labeled(labels, 0.05, seed=0)) if keep)
    assert kept == {0: 10, 1: 1}
    assert select_labeled([0, 1, None], 1.0, seed=0) == [True, True, False]
    with pytest.raises(ValueError, match="label_fraction must be in"):
        select_labeled(labels, 0.0, seed=0)


@pytest.fixture(scope="module")
def refnet_ms(tmp_path_factory):
    config = inprocess.configuration(tmp_path_factory.mktemp("cfg"), "refnet_ms")
    model = inprocess.build(config, "refnet_ms")
    model.eval()
    return model


def test_masked_losses_equal_hand_computation_on_a_mixed_batch(refnet_ms):
    sample_list = inprocess.batch(size=8)
    labeled = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    sample_list.labeled = labeled
    with torch.no_grad():
        output = refnet_ms(sample_list)
        fused = output["fused_embedding"]
    losses = output["losses"]
    expected_ce = F.cross_entropy(output["scores"][labeled], sample_list.targets[labeled])
    assert losses["train/hateful_memes/cross_entropy"].item() == pytest.approx(expected_ce.item(), rel=1e-5)
    expected_ms = refnet_ms.config.ms_loss.weight * MultiSimilarity()(fused[labeled], sample_list.targets[labeled])
    assert losses["train/hateful_memes/ms_loss"].item() == pytest.approx(expected_ms.item(), rel=1e-5)
    unmasked = refnet_ms(inprocess.batch(size=8))["losses"]  # refiner terms do not depend on labels
    for modality in ("text", "image"):
        key = f"train/hateful_memes/refiner_{modality}"
        assert losses[key].item() == pytest.approx(unmasked[key].item(), rel=1e-6)


def test_a_batch_without_labeled_samples_is_the_refiner_loss_alone(refnet_ms):
    sample_list = inprocess.batch(size=6)
    sample_list.labeled = torch.zeros(6, dtype=torch.bool)
    losses = refnet_ms(sample_list)["losses"]
    assert losses["train/hateful_memes/cross_entropy"].item() == 0.0
    assert losses["train/hateful_memes/ms_loss"].item() == 0.0
    total = sum(value.sum() for value in losses.values())
    refiner = losses["train/hateful_memes/refiner_text"] + losses["train/hateful_memes/refiner_image"]
    assert torch.isfinite(total) and total.item() == pytest.approx(refiner.item())


def _strip_labels(path):
    rows = [json.loads(line) for line in open(path)]
    with open(path, "w") as handle:
        for row in rows:
            row.pop("label", None)
            handle.write(json.dumps(row) + "\n")


def test_pretrain_then_finetune_starts_from_the_pretrained_weights(tmp_path):
    unlabeled, labeled = str(tmp_path / "unlabeled"), str(tmp_path / "labeled")
    root = replicas.hateful_memes(unlabeled, sizes=(48, 16, 8))
    for name in ("train.jsonl", "dev_unseen.jsonl"):
        _strip_labels(os.path.join(root, "annotations", name))  # pretraining data has no labels at all
    replicas.hateful_memes(labeled, sizes=(32, 16, 8))

    pretrain = runner.tiny_config(str(tmp_path / "p"), "hateful_memes", "refnet",
                                  {"includes": [os.path.join(runner.PROJECT_CONFIGS, "hateful_memes", "pretrain.yaml")]})
    runner.run_mmf("mmf_run", pretrain, unlabeled, str(tmp_path / "pretrain"))
    with open(tmp_path / "pretrain" / "train.log") as handle:
        log = handle.read()
    assert "refiner_text" in log and "cross_entropy" not in log
    pretrained = torch.load(tmp_path / "pretrain" / "refnet_final.pth", map_location="cpu")

    finetune = runner.tiny_config(str(tmp_path / "f"), "hateful_memes", "refnet_ms",
                                  {"optimizer": {"params": {"lr": 0.0}}, "training": {"max_updates": 2, "seed": 2},
                                   "dataset_config": {"hateful_memes": {"label_fraction": 0.5}}})
    runner.run_mmf("mmf_run", finetune, labeled, str(tmp_path / "finetune"), "checkpoint.resume_pretrained=True",
                   f"checkpoint.resume_file={tmp_path}/pretrain/refnet_final.pth")
    tuned = torch.load(tmp_path / "finetune" / "refnet_ms_final.pth", map_location="cpu")
    for prefix in ("model.bert.", "model.fusion.", "model.fusion_norm.", "model.refiner."):
        keys = [k for k in pretrained if k.startswith(prefix)]
        assert keys and all(torch.equal(pretrained[k], tuned[k]) for k in keys), prefix
    # another seed initialises differently: the equal parts above were loaded, and the
    # classifier (not mapped) starts fresh
    assert not torch.equal(pretrained["model.classifier.3.weight"], tuned["model.classifier.3.weight"])


# --- stock models under label_fraction ---------------------------------------

@pytest.mark.parametrize("name", ["labeled_cross_entropy", "labeled_logit_bce"])
def test_labeled_losses_use_labeled_rows_only(name):
    from mmf.common.registry import registry
    from mmf.common.sample import SampleList

    torch.manual_seed(0)
    scores = torch.randn(6, 3, requires_grad=True)
    if name == "labeled_cross_entropy":
        targets = torch.tensor([0, 2, 1, 1, 0, 2])
        reference = lambda rows: F.cross_entropy(scores[rows], targets[rows])  # noqa: E731
    else:
        targets = (torch.rand(6, 3) > 0.5).float()
        reference = lambda rows: F.binary_cross_entropy_with_logits(scores[rows], targets[rows]) * 3  # noqa: E731
    loss = registry.get_loss_class(name)()
    batch = SampleList({"targets": targets})
    everything = torch.ones(6, dtype=torch.bool)
    assert loss(batch, {"scores": scores}).item() == pytest.approx(reference(everything).item(), rel=1e-6)
    labeled = torch.tensor([1, 0, 0, 1, 1, 0], dtype=torch.bool)
    batch.labeled = labeled
    masked = loss(batch, {"scores": scores})
    assert masked.item() == pytest.approx(reference(labeled).item(), rel=1e-6)
    masked.backward()
    assert scores.grad[~labeled].abs().sum() == 0 and scores.grad[labeled].abs().sum() > 0
    batch.labeled = torch.zeros(6, dtype=torch.bool)
    none = loss(batch, {"scores": scores})
    assert none.item() == 0.0 and none.requires_grad


def test_stock_model_with_plain_loss_and_few_labels_is_refused(tmp_path):
    """vilbert + cross_entropy would train on the unlabeled rows' placeholder label 0."""
    root = str(tmp_path / "data")
    replicas.hateful_memes(root, sizes=(32, 16, 8))
    few = {"dataset_config": {"hateful_memes": {"label_fraction": 0.25}}, "training": {"max_updates": 2}}
    plain = runner.tiny_config(str(tmp_path / "a"), "hateful_memes", "vilbert",
                               {**few, "model_config": {"vilbert": {"losses": ["cross_entropy"]}}})
    result = runner.run_mmf("mmf_run", plain, root, str(tmp_path / "plain"), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "dataset_config.hateful_memes: 24 training rows have no label" in message
    assert "model 'vilbert' trains with losses ['cross_entropy']" in message and "labeled_cross_entropy" in message
    # the project's vilbert config uses labeled_cross_entropy: it trains, on the 8 labeled rows
    ok = runner.tiny_config(str(tmp_path / "b"), "hateful_memes", "vilbert", few)
    runner.run_mmf("mmf_run", ok, root, str(tmp_path / "ok"))
    with open(tmp_path / "ok" / "train.log") as handle:
        assert "train/hateful_memes/labeled_cross_entropy" in handle.read()


def test_registered_ms_loss_uses_labeled_rows_only():
    """A stock model listing ``refnet_multi_similarity`` under label_fraction: anchors and pairs from labeled rows only."""
    from mmf.common.registry import registry
    from mmf.common.sample import SampleList

    torch.manual_seed(0)
    embeddings = torch.randn(8, 5, requires_grad=True)
    targets = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    labeled = torch.tensor([1, 1, 0, 1, 0, 1, 1, 0], dtype=torch.bool)
    loss = registry.get_loss_class("refnet_multi_similarity")(weight=0.5)
    batch = SampleList({"targets": targets, "labeled": labeled})
    masked = loss(batch, {"fused_embedding": embeddings})
    expected = 0.5 * MultiSimilarity()(embeddings[labeled], targets[labeled])
    assert masked.item() == pytest.approx(expected.item(), rel=1e-6)
    assert masked.item() != pytest.approx(loss(SampleList({"targets": targets}), {"fused_embedding": embeddings}).item())
    masked.backward()
    assert embeddings.grad[~labeled].abs().sum() == 0 and embeddings.grad[labeled].abs().sum() > 0


def test_label_check_accepts_label_aware_losses_and_names_the_plain_ones():
    from omegaconf import OmegaConf

    from mmf_refnet.data.label_fraction import check_losses_are_label_aware

    def config(model, losses):
        return OmegaConf.create({"model": model, "model_config": {model: {"losses": losses}}})

    aware = ["labeled_cross_entropy", {"type": "refnet_multi_similarity"}, {"type": "refnet_refiner"}]
    check_losses_are_label_aware(config("vilbert", aware), "hateful_memes", 5)
    with pytest.raises(ValueError, match=r"losses \['logit_bce'\]"):
        check_losses_are_label_aware(config("vilbert", ["refnet_multi_similarity", "logit_bce"]), "mmimdb", 3)
    with pytest.raises(ValueError, match=r"model 'refnet_ms' trains with losses \['cross_entropy'\]"):
        check_losses_are_label_aware(config("refnet_ms", ["cross_entropy"]), "hateful_memes", 5)
