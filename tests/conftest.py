import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MMF_ZOO_MIRROR", "http://127.0.0.1:9/mmf/data/")  # no test reaches MMF's server
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
    """REFNET_TEST_DEVICE=cuda must run on a GPU: MMF would silently fall back to the CPU."""
    if os.environ.get("REFNET_TEST_DEVICE", "cpu") == "cuda":
        import pytest
        import torch

        if not torch.cuda.is_available():
            pytest.exit("REFNET_TEST_DEVICE=cuda, but torch sees no CUDA device", returncode=2)
