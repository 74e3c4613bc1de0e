"""t-SNE of a trained checkpoint's fused embeddings and refiner outputs (paper Fig. 5)."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmf_refnet.analysis import collect, tsne
from tests import replicas, runner


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("tsne")
    data_dir = str(work / "data")
    replicas.hateful_memes(data_dir, sizes=(64, 40, 8), rule="xor")
    config = runner.tiny_config(str(work), "hateful_memes", "refnet_ms", {"training": {"max_updates": 20}})
    runner.run_mmf("mmf_run", config, data_dir, str(work / "save"))
    return {"checkpoint": str(work / "save" / "best.ckpt"), "data": data_dir, "work": work}


def test_collected_embeddings_match_the_checkpointed_model(trained):
    arrays = collect.collect_embeddings(trained["checkpoint"], "val", overrides=[f"env.data_dir={trained['data']}"])
    assert arrays["fused"].shape == (40, 16) and arrays["labels"].shape == (40,)
    assert arrays["refined_text"].shape == arrays["target_text"].shape == (40, 32)
    # the refiner loss recomputed from the collected arrays equals a cosine formula on them
    cosine = (arrays["refined_image"] * arrays["target_image"]).sum(1) / (
        np.linalg.norm(arrays["refined_image"], axis=1) * np.linalg.norm(arrays["target_image"], axis=1))
    assert np.all(np.abs(cosine) <= 1 + 1e-5)
    state = torch.load(trained["checkpoint"], map_location="cpu", weights_only=False)
    assert state["config"]["model"] == "refnet_ms"


def test_tsne_png_is_non_trivial_and_deterministic(trained, tmp_path):
    arrays = collect.collect_embeddings(trained["checkpoint"], "val", max_samples=30,
                                        overrides=[f"env.data_dir={trained['data']}"], progress=False)
    assert len(arrays["fused"]) == 30
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    coords = tsne.plot_tsne([arrays, arrays], ["run a", "run b"], str(first), perplexity=100, seed=0)
    tsne.plot_tsne([arrays, arrays], ["run a", "run b"], str(second), perplexity=100, seed=0)
    assert first.read_bytes() == second.read_bytes()
    image = Image.open(first)
    assert image.size[0] > 600 and len(image.convert("RGB").getcolors(1 << 20)) > 20
    assert coords[0]["fused"].shape == (30, 2) and coords[0]["refined"].shape == (60, 2)


def test_analysis_refuses_a_model_without_refiner(tmp_path):
    data_dir = str(tmp_path / "data")
    replicas.hateful_memes(data_dir, sizes=(16, 8, 8))
    config = runner.tiny_config(str(tmp_path), "hateful_memes", "vilbert")
    runner.run_mmf("mmf_run", config, data_dir, str(tmp_path / "save"))
    with pytest.raises(ValueError, match="has no refiner"):
        collect.collect_embeddings(str(tmp_path / "save" / "best.ckpt"), overrides=[f"env.data_dir={data_dir}"])


def test_cli_writes_tsne_and_graph_outputs(trained, tmp_path, capsys):
    """The ``refnet analyze`` commands' own function (the README's lines run the installed script)."""
    from mmf_refnet import cli

    opt = f"env.data_dir={trained['data']}"
    tsne_png = tmp_path / "fig5.png"
    assert cli.main(["analyze", "tsne", "--checkpoint", trained["checkpoint"], trained["checkpoint"],
                     "--name", "a", "b", "--opt", opt, "--perplexity", "10", "--out", str(tsne_png)]) == 0
    assert tsne_png.stat().st_size > 10_000
    capsys.readouterr()
    assert cli.main(["analyze", "graph", "--checkpoint", trained["checkpoint"], "--opt", opt,
                     "--out", str(tmp_path / "graph")]) == 0
    assert "linear R² per modality" in capsys.readouterr().out
    assert (tmp_path / "graph" / "graph_checkpoint_map.png").exists()
