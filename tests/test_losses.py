"""Loss values against hand-written references (paper Eq. 3 and Eq. 5)."""

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from mmf_refnet.losses import MultiSimilarity, pair_masks, pml_scales, refiner_distances, refiner_terms


def reference_ms(embeddings, is_positive, is_negative, positive_scale=2.0, negative_scale=50.0, base=0.5):
    """Eq. 5 in plain Python: mean over anchors of the positive and negative terms."""
    x = [[float(v) for v in row] for row in F.normalize(embeddings.double(), dim=1)]
    total = 0.0
    for i in range(len(x)):
        pos, neg = 0.0, 0.0
        for k in range(len(x)):
            s = sum(a * b for a, b in zip(x[i], x[k]))
            if is_positive(i, k):
                pos += math.exp(-positive_scale * (s - base))
            elif is_negative(i, k):
                neg += math.exp(negative_scale * (s - base))
        total += math.log(1 + pos) / positive_scale + math.log(1 + neg) / negative_scale
    return total / len(x)


def test_refiner_terms_equal_hand_computed_cosine_loss():
    outputs = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [3.0, 0.0]]])  # (text, image) x 2 rows
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[-1.0, -1.0], [1.0, 1.0]]])
    terms = refiner_terms(outputs, targets, {"text": 0.1, "image": 0.3})
    # text: cos = 1 and 0 -> mean(1 - cos) = 0.5; image: cos = -1 and 1/sqrt(2)
    assert terms["text"].item() == pytest.approx(0.1 * 0.5)
    assert terms["image"].item() == pytest.approx(0.3 * ((2.0 + (1 - 1 / math.sqrt(2))) / 2), rel=1e-6)
    assert terms["text"].shape == (1,)
    with pytest.raises(ValueError, match=r"2 stacked modalities but weights for \['text'\]"):
        refiner_terms(outputs, targets, {"text": 0.1})


def test_refiner_distances_need_one_shape():
    with pytest.raises(ValueError, match=r"outputs \(2, 3, 4\) and targets \(2, 3, 5\) need one shape"):
        refiner_distances(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))


def test_paper_alpha_beta_map_to_pml_reversed():
    assert pml_scales(alpha=50, beta=2) == {"alpha": 2.0, "beta": 50.0}
    loss = MultiSimilarity(alpha=50, beta=2, miner_epsilon=None).loss
    assert (loss.alpha, loss.beta) == (2.0, 50.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_single_label_ms_equals_reference_loop(seed):
    torch.manual_seed(seed)
    embeddings, labels = torch.randn(10, 8), torch.randint(0, 2, (10,))
    value = MultiSimilarity(alpha=50, beta=2, miner_epsilon=None)(embeddings, labels)
    expected = reference_ms(embeddings, lambda i, k: i != k and labels[i] == labels[k], lambda i, k: labels[i] != labels[k])
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # the same number through pml's public API (labels path), as a second reference
    public = pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)(embeddings, labels)
    assert value.item() == pytest.approx(public.item(), rel=1e-5)


def test_swapping_the_scales_changes_the_loss():
    torch.manual_seed(0)
    embeddings, labels = torch.randn(10, 8), torch.randint(0, 2, (10,))
    right = MultiSimilarity(alpha=50, beta=2, miner_epsilon=None)(embeddings, labels)
    swapped = MultiSimilarity(alpha=2, beta=50, miner_epsilon=None)(embeddings, labels)
    assert abs(right.item() - swapped.item()) > 1e-2


def test_three_class_ms_equals_reference_loop():
    torch.manual_seed(3)
    embeddings, labels = torch.randn(12, 6), torch.randint(0, 3, (12,))
    value = MultiSimilarity(miner_epsilon=None)(embeddings, labels)
    expected = reference_ms(embeddings, lambda i, k: i != k and labels[i] == labels[k], lambda i, k: labels[i] != labels[k])
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_multilabel_ms_uses_each_anchors_own_labels():
    torch.manual_seed(4)
    embeddings = torch.randn(8, 6)
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1], [0, 0, 1], [1, 0, 0]]).float()
    shares = (targets @ targets.t()) > 0
    value = MultiSimilarity(miner_epsilon=None)(embeddings, targets)
    expected = reference_ms(embeddings, lambda i, k: i != k and bool(shares[i, k]), lambda i, k: not bool(shares[i, k]))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # upstream MMF's bug compared every anchor with sample 0's labels: that gives another number
    buggy = (targets @ targets[0]) > 0
    wrong = reference_ms(embeddings, lambda i, k: i != k and bool(buggy[k]), lambda i, k: not bool(buggy[k]))
    assert abs(value.item() - wrong) > 1e-3


def test_same_labels_rule_needs_identical_label_sets():
    targets = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]]).float()
    positive, negative = pair_masks(targets, "same_labels")
    assert positive[0, 1] and not positive[0, 2] and not negative[0, 2] and negative[0, 3]
    assert not positive.diagonal().any() and not negative.diagonal().any()


def test_mining_matches_pml_miner():
    torch.manual_seed(5)
    embeddings, labels = torch.randn(16, 8), torch.randint(0, 3, (16,))
    value = MultiSimilarity(miner_epsilon=0.1)(embeddings, labels)
    pairs = pml_miners.MultiSimilarityMiner(epsilon=0.1)(embeddings, labels)
    public = pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)(embeddings, labels, pairs)
    assert value.item() == pytest.approx(public.item(), rel=1e-5)


def test_degenerate_batches_are_finite():
    ms = MultiSimilarity()
    one = ms(torch.randn(1, 4, requires_grad=True), torch.tensor([1]))
    assert one.item() == 0.0 and torch.isfinite(one)
    embeddings = torch.randn(5, 4, requires_grad=True)
    same_class = torch.zeros(5, dtype=torch.long)
    assert ms(embeddings, same_class).item() == 0.0  # MS mining keeps no pair when there is no negative (as pml's miner)
    unmined = MultiSimilarity(miner_epsilon=None)(embeddings, same_class)
    assert torch.isfinite(unmined) and unmined.item() > 0  # without mining the positive term remains
    unmined.backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ms_is_finite_and_float32_under_autocast(dtype):
    torch.manual_seed(6)
    layer = torch.nn.Linear(8, 8)
    inputs, labels = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 0, 1])
    try:
        with torch.autocast("cpu", dtype=dtype):
            value = MultiSimilarity()(layer(inputs) * 100, labels)
    except RuntimeError as error:  # fp16 autocast on CPU is missing in some torch builds
        pytest.skip(str(error))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert value.item() == pytest.approx(MultiSimilarity()(layer(inputs).float() * 100, labels).item(), rel=2e-2)


def test_unlabeled_anchors_are_excluded_and_normalised():
    torch.manual_seed(7)
    embeddings, labels = torch.randn(8, 5), torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    labeled = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]).bool()
    masked = MultiSimilarity(miner_epsilon=None)(embeddings, labels, labeled)
    only_labeled = MultiSimilarity(miner_epsilon=None)(embeddings[:4], labels[:4])
    assert masked.item() == pytest.approx(only_labeled.item(), rel=1e-6)
    none = MultiSimilarity()(embeddings, labels, torch.zeros(8, dtype=torch.bool))
    assert none.item() == 0.0


def test_refiner_needs_one_size_for_every_modality():
    from mmf_refnet.modules.refiner import Refiner

    with pytest.raises(ValueError, match=r"one size, got \{'text': 768, 'image': 1024\}.*fixed_random"):
        Refiner(16, {"text": 768, "image": 1024}, hidden_dim=32)
    refiner = Refiner(16, {"text": 768, "image": 1024}, hidden_dim=32, target_map="fixed_random", refiner_dim=64)
    outputs, targets = refiner(torch.randn(3, 16), {"text": torch.randn(3, 768), "image": torch.randn(3, 1024)})
    assert outputs.shape == targets.shape == (2, 3, 64)
