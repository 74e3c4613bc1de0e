import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MMF_ZOO_MIRROR", "http://127.0.0.1:9/mmf/data/")  # no test reaches MMF's server
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Under pytest-xdist each worker gets its share of the cores (set before torch is imported): two
# workers with two threads each would make every torch op wait on the other worker's threads.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))

# Scheduled first (``--dist loadgroup`` hands out units in collection order): the longest units,
# so that the shorter ones fill in around them.
FIRST_GROUPS = ("readme_demo", "own_data", "readme", "resume")


def pytest_configure(config):
    """REFNET_TEST_DEVICE=cuda must run on a GPU: MMF would silently fall back to the CPU."""
    config.addinivalue_line("markers", "xdist_group(name): run these tests in one pytest-xdist worker")
    if os.environ.get("REFNET_TEST_DEVICE", "cpu") == "cuda":
        import pytest
        import torch

        if not torch.cuda.is_available():
            pytest.exit("REFNET_TEST_DEVICE=cuda, but torch sees no CUDA device", returncode=2)


def _shares_a_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else []
    return any(defs and defs[-1].scope in ("module", "package", "session") and defs[-1].baseid for defs in definitions)


def _group(item):
    marker = item.get_closest_marker("xdist_group")
    return marker.args[0] if marker and marker.args else None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests that share a module-scoped fixture run in one worker (the fixture is built once); the
    groups that take longest start first."""
    for item in items:
        if _group(item) is None and _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__.rpartition(".")[2].removeprefix("test_")))

    def rank(item):
        group = _group(item)
        return FIRST_GROUPS.index(group) if group in FIRST_GROUPS else len(FIRST_GROUPS)

    items.sort(key=rank)  # stable: the order within a group is the collection order
