"""Latent graph induction (paper Theorem 4.1 / Corollary 4.1): values, not shapes."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmf_refnet.analysis import graph
from mmf_refnet.analysis.graph import training

TOL = 1e-3


@pytest.fixture(scope="module")
def setting():
    return graph.make_setting(m=4, d=32, n=64, seed=0)


@pytest.fixture(scope="module")
def cosine_result(setting):
    return graph.run_synthetic(setting, loss="cosine")


@pytest.fixture(scope="module")
def noise_sweep():
    return graph.sweep([4], [0.0, 0.01, 0.1], d=32, n=64, seed=0)


def test_setting_is_a_well_posed_graph(setting):
    a = setting.A
    assert np.array_equal(a, a.T) and np.all(np.diag(a) == 1) and set(np.unique(a)) == {0.0, 1.0}
    assert a.sum() > setting.m  # at least one edge besides the self-loops
    assert np.linalg.cond(setting.WA) <= 25.0
    again = graph.make_setting(m=4, d=32, n=64, seed=0)
    assert np.array_equal(again.A, a) and np.array_equal(again.W, setting.W) and np.array_equal(again.F, setting.F)
    with pytest.raises(ValueError, match="m must be >= 3"):
        graph.make_setting(m=2)


def test_moment_form_of_the_losses_equals_the_data_form():
    s = graph.make_setting(m=5, d=16, n=20, noise=0.1, seed=3)
    mix = torch.from_numpy(np.random.default_rng(1).standard_normal((5, 5)))
    decoded = torch.einsum("ij,njd->ind", mix, torch.from_numpy(s.fusion_input))
    features = torch.from_numpy(s.F.transpose(1, 0, 2).copy())
    stats = training._moments(s)
    for loss in graph.LOSSES:
        expected = graph.refiner_loss(decoded, features, loss)
        assert training._moment_refiner_loss(mix, stats, loss, s.d).item() == pytest.approx(expected.item(), rel=1e-12)


def test_cosine_refiner_recovers_identity_and_weighted_adjacency(cosine_result):
    r = cosine_result
    assert r["gw_err"] <= TOL  # Γ̃ W A = I (Theorem 4.1, up to the cosine's per-row scale)
    assert r["adj_err_true"] <= TOL  # Γ̃⁻¹ = W A (Corollary 4.1)
    assert r["adj_err"] <= TOL and r["graph_err"] <= TOL
    # the per-row scale is real (cosine is scale-invariant) and it is exactly what the gain normalises out
    assert r["gw_err_raw"] > 1e-2
    mats = r["matrices"]
    assert np.allclose(mats["gain"], np.diag(mats["Gamma"] @ mats["W_star"]), rtol=1e-8)
    assert np.all(mats["gain"] > 0)


def test_mse_refiner_gives_identity_without_normalisation(setting):
    r = graph.run_synthetic(setting, loss="mse")
    assert r["gw_err_raw"] <= TOL and r["adj_err_true"] <= TOL
    assert np.allclose(r["matrices"]["gain"], 1.0, atol=1e-8)


def test_recovery_across_m_up_to_8():
    for r in graph.sweep([3, 6, 8], [0.0], d=32, n=64, seed=1):
        assert r["gw_err"] <= TOL and r["adj_err_true"] <= TOL and r["graph_err"] <= TOL, r["m"]


def test_without_refiner_loss_recovery_fails(setting):
    low = graph.run_synthetic(setting, refiner=False, downstream_dim=1)
    assert low["gw_err"] > 0.1 and low["adj_err_true"] > 0.1
    # the fusion, tuned by a 1-dim task only, has rank 1: the best linear read-out is ≈ a rank-1 projector
    assert low["probe_gw_err"] == pytest.approx(math.sqrt(3 / 4), abs=0.01)
    assert np.linalg.matrix_rank(low["matrices"]["W_star"], tol=1e-8) == 1
    full = graph.run_synthetic(setting, refiner=False)
    assert full["gw_err"] > 0.1 and full["adj_err_true"] > 0.1  # Γ was never trained
    assert full["wstar_err"] <= TOL and full["probe_gw_err"] <= TOL  # though the full-dim fusion kept W A


def test_low_dim_downstream_with_refiner_recovers_graph_but_not_w(setting):
    r = graph.run_synthetic(setting, downstream_dim=1)
    assert r["gw_err"] <= TOL and r["adj_err"] <= TOL and r["graph_err"] <= TOL
    assert r["adj_err_true"] > 0.1  # W itself is not identifiable from a 1-dim downstream task


def test_noise_increases_the_error(noise_sweep):
    errors = [r["gw_err"] for r in noise_sweep]
    adjacency = [r["adj_err_true"] for r in noise_sweep]
    assert errors[0] <= 1e-6 and errors[0] < errors[1] < errors[2]
    assert adjacency[0] < adjacency[1] < adjacency[2]
    assert errors[2] > TOL


def test_k_larger_than_m_checks_left_inverse_only():
    r = graph.run_synthetic(graph.make_setting(m=4, k=6, d=32, n=64, seed=0))
    assert r["gw_err"] <= TOL and math.isnan(r["adj_err_true"])


def test_training_is_deterministic(setting, cosine_result):
    again = graph.run_synthetic(setting, loss="cosine")
    for key in ("W_hat", "Gamma"):
        assert np.array_equal(again["matrices"][key], cosine_result["matrices"][key])


def _decoded(path):
    image = Image.open(path)
    pixels = np.asarray(image.convert("RGB"))
    return image, len(np.unique(pixels.reshape(-1, 3), axis=0))


def test_synthetic_outputs_are_nontrivial_and_byte_identical(tmp_path, noise_sweep):
    rerun = graph.sweep([4], [0.0, 0.01, 0.1], d=32, n=64, seed=0)
    first = graph.save_synthetic(noise_sweep, tmp_path / "a")
    second = graph.save_synthetic(rerun, tmp_path / "b")
    for png_a, png_b in zip(first["png"], second["png"]):
        assert png_a.read_bytes() == png_b.read_bytes()
        image, colours = _decoded(png_a)
        assert image.size == (1020, 640) and colours > 50
        assert "Software" not in image.info
    assert first["json"].read_bytes() == second["json"].read_bytes()
    saved = json.loads(first["json"].read_text())["results"]
    assert [r["gw_err"] for r in saved] == [r["gw_err"] for r in noise_sweep]
    assert np.allclose(saved[0]["matrices"]["Gamma_inv"], noise_sweep[0]["matrices"]["Gamma_inv"])


def test_linear_fit_recovers_a_known_map():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6))
    coef, intercept = rng.standard_normal((5, 6)), rng.standard_normal(5)
    fit = graph.linear_fit(x, x @ coef.T + intercept)
    assert np.allclose(fit["coef"], coef, atol=1e-10) and np.allclose(fit["intercept"], intercept, atol=1e-10)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)
    # with independent noise of variance 1 on every output, R² is the signal's share of the variance
    x = rng.standard_normal((20000, 6))
    y = x @ coef.T + rng.standard_normal((20000, 5))
    expected = (coef**2).sum() / ((coef**2).sum() + 5)
    assert graph.linear_fit(x, y, holdout=0.25)["r2"] == pytest.approx(expected, abs=0.01)


def test_jacobian_of_decoders_at_the_mean():
    torch.manual_seed(0)
    emb = np.random.default_rng(0).standard_normal((50, 6))
    linear = torch.nn.Linear(6, 3).double()
    assert np.allclose(graph.decoder_jacobian(linear, emb), linear.weight.detach().numpy(), atol=1e-12)
    weight = torch.randn(4, 6, dtype=torch.float64)
    jac = graph.decoder_jacobian(lambda v: torch.tanh(v @ weight.T), emb)
    pre = weight.numpy() @ emb.mean(0)
    assert np.allclose(jac, (1 - np.tanh(pre) ** 2)[:, None] * weight.numpy(), atol=1e-12)
    with_dropout = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Dropout(0.5)).double().train()
    jacs = graph.decoder_jacobian({"text": with_dropout, "image": linear}, emb)
    assert np.allclose(jacs["text"], with_dropout[0].weight.detach().numpy(), atol=1e-12)  # dropout off
    assert with_dropout.training  # mode restored


def _planted(shared: bool, n: int = 4000):
    rng = np.random.default_rng(0)
    zt, zi, zs = rng.standard_normal((n, 3)), rng.standard_normal((n, 4)), rng.standard_normal((n, 2))
    rotation, _ = np.linalg.qr(rng.standard_normal((9, 9)))
    emb = np.hstack([zt, zi, zs]) @ rotation.T
    ct, cts, ci, cis = (rng.standard_normal(shape) for shape in [(3, 20), (2, 20), (4, 30), (2, 30)])
    scale = 1.0 if shared else 0.0
    targets = {"text": zt @ ct + scale * zs @ cts, "image": zi @ ci + scale * zs @ cis}
    share = {"text": (cts**2).sum() / ((ct**2).sum() + (cts**2).sum()),
             "image": (cis**2).sum() / ((ci**2).sum() + (cis**2).sum())}
    return emb, targets, share


def test_modality_map_measures_shared_directions():
    emb, targets, share = _planted(shared=True)
    result = graph.modality_map(emb, targets, energy=1.0)
    matrix = result["matrix"]
    assert result["modalities"] == ["text", "image"] and result["rank"] == {"text": 5, "image": 6}
    assert np.allclose(np.diag(matrix), 1.0, atol=1e-9)
    assert matrix[0, 1] == pytest.approx(share["image"], abs=0.03)  # text's part explains image's shared share
    assert matrix[1, 0] == pytest.approx(share["text"], abs=0.03)
    emb, targets, _ = _planted(shared=False)
    independent = graph.modality_map(emb, targets, energy=1.0)["matrix"]
    assert np.allclose(np.diag(independent), 1.0, atol=1e-9) and independent[0, 1] < 0.01 and independent[1, 0] < 0.01


def test_analyze_embeddings_writes_reproducible_outputs(tmp_path):
    emb, targets, _ = _planted(shared=True, n=1000)
    decoder = torch.nn.Linear(9, 20).double()
    with torch.no_grad():
        decoder.weight.copy_(torch.from_numpy(graph.linear_fit(emb, targets["text"])["coef"]))
    runs = [graph.analyze_embeddings(emb, targets, decoders={"text": decoder}, out_dir=tmp_path / name) for name in "ab"]
    assert runs[0]["jacobian_vs_linear"]["text"] == pytest.approx(1.0, abs=1e-12)
    assert runs[0]["fits"]["text"]["r2"] == pytest.approx(1.0, abs=1e-9)
    png_a, png_b = runs[0]["files"]["png"], runs[1]["files"]["png"]
    assert png_a.read_bytes() == png_b.read_bytes()
    image, colours = _decoded(png_a)
    assert image.size == (480, 400) and colours > 20
    summary = json.loads(runs[0]["files"]["json"].read_text())
    assert np.allclose(summary["map"]["matrix"], runs[0]["map"]["matrix"])


def test_cli_synthetic_prints_table_and_writes_files(tmp_path, capsys):
    assert graph.main_graph(["--synthetic", "--m", "3", "--d", "16", "--n", "32", "--noise", "0", "0.1",
                             "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gw_err" in out and "adj_err_true" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "graph_m3_k3_noise0.1_cosine_down3.png", "graph_m3_k3_noise0_cosine_down3.png", "graph_synthetic_cosine_downk.json"]
    results = json.loads((tmp_path / "graph_synthetic_cosine_downk.json").read_text())["results"]
    assert results[0]["gw_err"] <= TOL and results[1]["gw_err"] > results[0]["gw_err"]


def test_cli_checkpoint_hook(tmp_path, capsys):
    with pytest.raises(SystemExit):
        graph.main_graph(["--checkpoint", "model.ckpt"])
    emb, targets, _ = _planted(shared=True, n=500)
    assert graph.main_graph(["--checkpoint", "model.ckpt", "--out", str(tmp_path)],
                            load_checkpoint=lambda args: {"embeddings": emb, "targets": targets}) == 0
    assert "full R²" in capsys.readouterr().out
    assert (tmp_path / "graph_checkpoint_map.png").exists() and (tmp_path / "graph_checkpoint.json").exists()


def test_package_import_does_not_load_matplotlib():
    code = ("import sys, mmf_refnet; before = 'matplotlib' in sys.modules; "
            "import mmf_refnet.analysis; from mmf_refnet.analysis import graph; "
            "assert ('matplotlib' in sys.modules) == before, 'analysis imported matplotlib'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_parses_every_option_exactly(capsys):
    """One parser: ``--m 4 8`` is a sweep over m (it once failed: "unrecognized arguments: 8"), ``--m 8``
    is m = 8 (it once ran m = 4: prefix matching took --m for --max-samples), abbreviations are refused."""
    from mmf_refnet import cli

    parser = graph.build_parser()
    assert parser.parse_args(["--synthetic", "--m", "4", "8"]).m == [4, 8]
    args = parser.parse_args(["--synthetic", "--m", "8", "--max-samples", "5"])
    assert args.m == [8] and args.max_samples == 5
    for abbreviated in (["--synthetic", "--max", "5"], ["--synthetic", "--nois", "0.1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(abbreviated)
    with pytest.raises(SystemExit):
        cli.main(["analyze", "graph", "--help"])
    usage = capsys.readouterr().out
    options = [option for action in parser._actions for option in action.option_strings]
    assert "--split" in options and "--opt" in options and "--m" in options
    assert all(option in usage for option in options)
