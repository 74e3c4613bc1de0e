"""Plugin metrics against sklearn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from mmf_refnet import metrics  # noqa: F401  (registers the metric)
from tests import inprocess  # noqa: F401  (registers the config MMF's metrics read)


def _report(scores, targets):
    from mmf.common.sample import SampleList

    sample_list = SampleList()
    sample_list.targets = targets
    return sample_list, {"scores": scores}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_macro_f1_matches_sklearn(seed):
    from mmf.common.registry import registry

    rng = np.random.default_rng(seed)
    scores = torch.tensor(rng.normal(0, 2, (40, 6)), dtype=torch.float32)
    targets = torch.tensor(rng.integers(0, 2, (40, 6)), dtype=torch.float32)
    metric = registry.get_metric_class("refnet_multilabel_macro_f1")()
    value = metric.calculate(*_report(scores, targets))
    predicted = (torch.sigmoid(scores) > 0.5).numpy().astype(int)
    expected = f1_score(targets.numpy().astype(int), predicted, average="macro", zero_division=0)
    assert value.item() == pytest.approx(expected, abs=1e-6)
    # rc10's own multilabel_macro_f1 takes the argmax: a different (wrong) number
    stock = registry.get_metric_class("multilabel_macro_f1")().calculate(*_report(scores, targets))
    assert abs(stock.item() - expected) > 1e-3
