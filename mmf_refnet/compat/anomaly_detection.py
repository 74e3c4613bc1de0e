"""rc10's ``BaseTrainer.train()`` calls ``torch.autograd.set_detect_anomaly(True)``
unconditionally, which makes every training step several times slower. During
``train()`` that call now follows ``training.detect_anomaly`` (default false)."""

import torch


def apply() -> None:
    from mmf.trainers.base_trainer import BaseTrainer

    original_train = BaseTrainer.train
    if hasattr(original_train, "__wrapped__"):
        return

    def train(self):
        wanted = bool(self.config.training.get("detect_anomaly", False))
        real = torch.autograd.set_detect_anomaly

        def set_detect_anomaly(mode, *args, **kwargs):
            return real(bool(mode) and wanted, *args, **kwargs)

        torch.autograd.set_detect_anomaly = set_detect_anomaly
        try:
            return original_train(self)
        finally:
            torch.autograd.set_detect_anomaly = real
            torch.autograd.set_detect_anomaly(False)

    train.__wrapped__ = original_train
    BaseTrainer.train = train
