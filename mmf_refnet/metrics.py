"""Metrics rc10 gets wrong.

rc10's ``multilabel_macro_f1`` inherits ``F1`` instead of ``MultiLabelF1``
(fixed upstream in 2020), so it takes the argmax of the scores: a multilabel
macro F1 computed as single-label. ``refnet_multilabel_macro_f1`` thresholds
sigmoid(scores) at 0.5 like rc10's (correct) ``multilabel_micro_f1``, and counts
a class with no true and no predicted positive as F1 = 0 (sklearn's
``zero_division=0``) instead of warning.
"""

from mmf.common.registry import registry
from mmf.modules.metrics import MultiLabelF1


@registry.register_metric("refnet_multilabel_macro_f1")
class MultiLabelMacroF1(MultiLabelF1):
    """Multilabel macro F1 on round(sigmoid(scores)). **Key:** ``refnet_multilabel_macro_f1``"""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("zero_division", 0)
        super().__init__(average="macro", **kwargs)
        self.name = "refnet_multilabel_macro_f1"
