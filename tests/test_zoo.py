"""MMF's dataset zoo and mmf_convert_hm on MMF's real layouts, served by a local HTTP server.

The tarballs are built from replicas in MMF's real layouts (tests/replicas.py) and
served at the zoo's own ``mmf://`` paths; the mirror (``$MMF_ZOO_MIRROR`` /
``env.zoo_mirror``) points the unmodified ``mmf_run`` at the server, and a copy of
our zoo whose hashcodes are those of the local tarballs is passed as
``env.dataset_zoo`` (keys, URLs, versions: upstream's). Nothing here reaches the network.
"""

import glob
import json
import os
import re
import subprocess
import zipfile

import pytest
import yaml

import mmf_refnet  # noqa: F401  (shims, before anything imports mmf_cli)
from tests import forkserver, replicas, runner
from tests.zoo_server import REAL_ZOOS, ZooServer, zoo_with_hashes

# Upstream MMF's hashcodes (first 16 hex digits) of the files our zoo lists.
UPSTREAM_PREFIXES = {
    "datasets/hateful_memes/defaults/features/features_2020_10_01.tar.gz": "ed23243d17485f1c",
    "datasets/hateful_memes/defaults/extras.tar.gz": "1bd88fa36b5c5652",
    "datasets/mmimdb/defaults/features/features.tar.gz": "dab8ef859d872fa4",
    "datasets/mmimdb/defaults/annotations/annotations.tar.gz": "2c9eed4cc8709cdf",
    "datasets/mmimdb/defaults/extras.tar.gz": "08dd544c152c54ca",
    "datasets/flickr30k/defaults/features/features.tar.gz": "679af7902f342480",
    "datasets/visual_entailment/defaults/annotations/annotations.tar.gz": "34432c8c25cce276",
}
NUM_LABELS = {"hateful_memes": 2, "mmimdb": 5, "visual_entailment": 3}  # MM-IMDB: 4 genres + the vocabulary's <unk>
METRIC = {"hateful_memes": "roc_auc", "mmimdb": "multilabel_micro_f1", "visual_entailment": "accuracy"}
PASSWORD = "not-the-real-one"
# what each dataset's download leaves under <data_dir>/datasets/ (MMF's layout)
EXTRACTED = {
    "hateful_memes": ["hateful_memes/defaults/features/detectron.lmdb/data.mdb",
                      "hateful_memes/defaults/extras/vocabs/vocabulary_100k.txt"],
    "mmimdb": ["mmimdb/defaults/features/features.lmdb/data.mdb", "mmimdb/defaults/annotations/train.jsonl",
               "mmimdb/defaults/annotations/dev.jsonl", "mmimdb/defaults/annotations/test.jsonl",
               "mmimdb/defaults/extras/classes_mm_imdb.txt", "mmimdb/defaults/extras/vocab_mmimdb.txt"],
    "visual_entailment": ["flickr30k/defaults/features/detectron.lmdb/data.mdb",
                          "visual_entailment/defaults/annotations/snli_ve_train.jsonl",
                          "visual_entailment/defaults/annotations/snli_ve_dev.jsonl",
                          "visual_entailment/defaults/annotations/snli_ve_test.jsonl",
                          "visual_entailment/defaults/extras/vocabs/vocabulary_100k.txt"],
}
HM_SIZES = (32, 16, 8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    zoo = ZooServer(str(tmp_path_factory.mktemp("served")))
    yield zoo
    zoo.close()


def convert_hm_zip(zip_path: str, data_dir: str, *extra):
    """The installed ``mmf_convert_hm`` script in a process of its own (forked from the preloaded
    server, tests/forkserver.py; the README's line runs it as a new interpreter)."""
    command = [runner.console_script("mmf_convert_hm"), f"--zip_file={zip_path}", f"--password={PASSWORD}",
               f"--mmf_data_folder={data_dir}", *extra]
    return forkserver.run(command, runner.offline_env(), timeout=300)


def publish(server, tmp_path, dataset: str, **sizes):
    """Build the replica and serve it as MMF's zoo does, under a mirror URL of its own:
    (mirror URL, {mmf:// path: sha256}, {mmf:// path: the server's request key})."""
    source = str(tmp_path / "source")
    getattr(replicas, dataset)(source, **sizes)
    prefix = os.path.basename(tmp_path)
    hashes = replicas.zoo_tarballs(source, dataset, os.path.join(server.root, prefix))
    return f"{server.url}{prefix}/", hashes, {path: f"{prefix}/{path}" for path in hashes}


def train(tmp_path, dataset: str, data_dir: str, zoo: str, *opts, mirror_env=True, max_updates=6):
    overrides = {"model_config": {"refnet_ms": {"num_labels": NUM_LABELS[dataset]}},
                 "training": {"max_updates": max_updates}}
    config = runner.tiny_config(str(tmp_path), dataset, "refnet_ms", overrides)
    env = {"MMF_ZOO_MIRROR": zoo} if mirror_env else {}
    mirror_opt = [] if mirror_env else [f"env.zoo_mirror={zoo}"]
    return runner.run_mmf("mmf_run", config, data_dir, str(tmp_path / "save"), *mirror_opt, *opts, env=env,
                          check=False)


def val_metrics(save_dir: str) -> dict:
    with open(os.path.join(save_dir, "train.log")) as handle:
        lines = [line for line in handle if "progress:" in line and "val/" in line]
    return {k: float(v) for k, v in re.findall(r"val/[\w]+/([\w]+): ([0-9.]+)", lines[-1])} if lines else {}


@pytest.fixture(scope="module", params=["hateful_memes", "mmimdb", "visual_entailment"])
def downloaded(request, server, tmp_path_factory):
    """One mmf_run per dataset: nothing on disk but (for Hateful Memes) mmf_convert_hm's output."""
    dataset = request.param
    tmp_path = tmp_path_factory.mktemp(dataset)
    sizes = {"sizes": HM_SIZES} if dataset == "hateful_memes" else {}
    mirror, hashes, keys = publish(server, tmp_path, dataset, **sizes)
    data = str(tmp_path / "data")
    if dataset == "hateful_memes":  # annotations from the challenge zip, as users get them
        zip_path = replicas.hateful_memes_zip(str(tmp_path / "hateful_memes.zip"), PASSWORD, sizes=HM_SIZES)
        converted = convert_hm_zip(zip_path, data, "--bypass_checksum=1")
        assert converted.returncode == 0, converted.stderr[-3000:]
    zoo = zoo_with_hashes("datasets", hashes, str(tmp_path / "datasets_zoo.yaml"))
    seen = ["dataset_config.hateful_memes.annotation_set=seen"] if dataset == "hateful_memes" else []
    result = train(tmp_path, dataset, data, mirror, f"env.dataset_zoo={zoo}", *seen,
                   mirror_env=dataset != "visual_entailment")  # SNLI-VE sets the mirror by its config key
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    fetched = {path: server.requests[key] for path, key in keys.items()}
    return {"dataset": dataset, "tmp": tmp_path, "data": data, "zoo": zoo, "mirror": mirror, "fetched": fetched}


def test_mmf_run_downloads_verifies_extracts_and_trains(downloaded):
    dataset, datasets_dir = downloaded["dataset"], os.path.join(downloaded["data"], "datasets")
    assert downloaded["fetched"] == {path: 1 for path in downloaded["fetched"]}
    for path in EXTRACTED[dataset]:
        assert os.path.isfile(os.path.join(datasets_dir, path)), path
    markers = glob.glob(os.path.join(datasets_dir, "**", ".built.json"), recursive=True)
    assert markers and {json.load(open(marker))["version"] for marker in markers} <= zoo_versions()
    assert not glob.glob(os.path.join(datasets_dir, "**", "*.part"), recursive=True)
    assert not glob.glob(os.path.join(datasets_dir, "**", ".*.extracting-*"), recursive=True)
    metrics = val_metrics(str(downloaded["tmp"] / "save"))
    assert 0.0 <= metrics[METRIC[dataset]] <= 1.0, metrics
    if dataset == "hateful_memes":  # evaluated on the seen split (annotation_set=seen)
        with open(downloaded["tmp"] / "save" / "config.yaml") as handle:
            assert "annotations/dev_seen.jsonl" in handle.read()


def test_a_second_run_downloads_nothing(downloaded, server):
    if downloaded["dataset"] != "mmimdb":
        pytest.skip("one dataset suffices")
    before = dict(server.requests)
    result = train(downloaded["tmp"], "mmimdb", downloaded["data"], downloaded["mirror"],
                   f"env.dataset_zoo={downloaded['zoo']}",
                   "env.save_dir=" + str(downloaded["tmp"] / "save2"), max_updates=2)
    assert result.returncode == 0, result.stderr[-5000:]
    assert dict(server.requests) == before


def _features_folder_is_clean(folder: str) -> None:
    left = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    assert all(name.endswith(".part") for name in left), f"left behind in {folder}: {left}"


def test_a_wrong_hashcode_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    mirror, hashes, _ = publish(server, tmp_path, "visual_entailment")
    wrong = dict(hashes)
    features = "datasets/flickr30k/defaults/features/features.tar.gz"
    wrong[features] = "f" * 64
    zoo = zoo_with_hashes("datasets", wrong, str(tmp_path / "zoo.yaml"))
    data = str(tmp_path / "data")
    result = train(tmp_path, "visual_entailment", data, mirror, f"env.dataset_zoo={zoo}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    folder = os.path.join(data, "datasets", "flickr30k", "defaults", "features")
    for expected in (f"{mirror}{features}", "f" * 64, os.path.join(folder, "features.tar.gz"),
                     f"its SHA-256 is {hashes[features]}", "To place the file by hand",
                     "dataset_config.visual_entailment.features.train"):
        assert expected in output, expected
    assert os.listdir(folder) == []  # not the corrupt file, not its .part, no marker, no extracted data


def test_a_truncated_download_is_a_clear_error_and_leaves_nothing_extracted(server, tmp_path):
    mirror, hashes, keys = publish(server, tmp_path, "mmimdb")
    features = "datasets/mmimdb/defaults/features/features.tar.gz"
    server.truncated.add(keys[features])
    zoo = zoo_with_hashes("datasets", hashes, str(tmp_path / "zoo.yaml"))
    data = str(tmp_path / "data")
    result = train(tmp_path, "mmimdb", data, mirror, f"env.dataset_zoo={zoo}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert server.requests[keys[features]] == 3  # retried, resuming where it could
    folder = os.path.join(data, "datasets", "mmimdb", "defaults", "features")
    for expected in ("Download failed (3 attempts)", f"{mirror}{features}", hashes[features],
                     os.path.join(folder, "features.tar.gz"), "To place the file by hand"):
        assert expected in output, expected
    _features_folder_is_clean(folder)


def test_fetch_never_takes_a_partial_file_for_a_whole_one(server, tmp_path):
    """In-process: a dropped download leaves only <file>.part; the next fetch replaces it and verifies."""
    from mmf_refnet.compat import zoo_download

    mirror, hashes, keys = publish(server, tmp_path, "mmimdb")
    path = "datasets/mmimdb/defaults/extras.tar.gz"
    target = str(tmp_path / "extras.tar.gz")
    server.truncated.add(keys[path])
    with pytest.raises(zoo_download.ZooDownloadError, match="Download failed"):
        zoo_download.fetch(mirror + path, target, hashes[path])
    server.truncated.discard(keys[path])
    assert not os.path.exists(target)  # at most target.part, never the final name
    zoo_download.fetch(mirror + path, target, hashes[path])
    assert zoo_download.sha256(target) == hashes[path] and not os.path.exists(target + ".part")


def test_a_broken_archive_leaves_nothing_half_extracted(tmp_path):
    from mmf_refnet.compat import zoo_download

    source = str(tmp_path / "source")
    replicas.hateful_memes(source, sizes=(4, 2, 2))
    hashes = replicas.zoo_tarballs(source, "hateful_memes", str(tmp_path / "served"))
    archive = str(tmp_path / "served" / next(iter(hashes)))
    with open(archive, "r+b") as handle:
        handle.truncate(os.path.getsize(archive) * 2 // 3)
    folder = str(tmp_path / "features")
    os.makedirs(folder)
    with pytest.raises(zoo_download.ZooDownloadError, match="Cannot extract"):
        zoo_download.extract(archive, folder, "mmf://x", None)
    assert os.listdir(folder) == []


def test_offline_zoo_error_names_url_hash_target_and_mirror(tmp_path):
    from mmf_refnet.compat import zoo_download

    target = str(tmp_path / "features.tar.gz")
    with pytest.raises(zoo_download.ZooDownloadError) as error:
        zoo_download.fetch(runner.UNREACHABLE_MIRROR + "x/features.tar.gz", target, "ab" * 32)
    message = str(error.value)
    for expected in (runner.UNREACHABLE_MIRROR + "x/features.tar.gz", "ab" * 32, target, "env.zoo_mirror",
                     "MMF_ZOO_MIRROR", "sha256sum"):
        assert expected in message, expected
    assert not os.path.exists(target)


def test_the_zoo_entries_are_upstream_mmf(tmp_path):
    with open(os.path.join(REAL_ZOOS, "datasets.yaml")) as handle:
        zoo = yaml.safe_load(handle)
    listed = {}
    for entry in (zoo["hateful_memes"]["defaults"], zoo["mmimdb"], zoo["flickr30k"]["defaults"],
                  zoo["visual_entailment"]["defaults"]):
        for group in entry["resources"].values():
            for resource in group:
                assert re.fullmatch(r"[0-9a-f]{64}", resource["hashcode"]), resource
                listed[resource["url"][len("mmf://"):]] = resource["hashcode"][:16]
    assert listed == UPSTREAM_PREFIXES
    assert zoo["hateful_memes"]["defaults"]["resources"]["features"][0]["file_name"] == "features.tar.gz"
    with open(os.path.join(REAL_ZOOS, "models.yaml")) as handle:
        models = yaml.safe_load(handle)["vilbert"]["pretrained"]
    for entry in (*(models["cc"][name] for name in ("original", "full", "half", "small")), models["coco"],
                  models["vqa2"]):
        (resource,) = entry["resources"]
        assert resource["url"] == f"mmf://models/vilbert/{resource['file_name']}"
        assert re.fullmatch(r"[0-9a-f]{64}", resource["hashcode"])
    assert models["cc"]["original"]["resources"][0]["hashcode"].startswith("85e6354fcf2583e0")


def zoo_versions() -> set:
    """The zoo's versions as rc10 reads them (OmegaConf: ``1.0_2020_10_01`` is a YAML 1.1 float)."""
    from omegaconf import OmegaConf

    zoo = OmegaConf.to_container(OmegaConf.load(os.path.join(REAL_ZOOS, "datasets.yaml")))
    return {entry.get("version", entry.get("defaults", {}).get("version")) for entry in zoo.values()}


def test_the_default_configs_read_mmf_layouts():
    """The dataset configs name the files MMF's zoo and mmf_convert_hm write, not files of our own."""
    from omegaconf import OmegaConf

    root = os.path.join(runner.REPO, "mmf_refnet", "mmf_root", "configs", "datasets")
    hm = OmegaConf.load(os.path.join(root, "hateful_memes", "defaults.yaml")).dataset_config.hateful_memes
    assert (hm.features.train[0], hm.annotations.val[0], hm.annotations.test[0]) == (
        "hateful_memes/defaults/features/detectron.lmdb", "hateful_memes/defaults/annotations/dev_unseen.jsonl",
        "hateful_memes/defaults/annotations/test_unseen.jsonl")
    for switch, val, test in (("seen", "dev_seen", "test_seen"), ("phase1", "dev", "test")):
        hm.annotation_set = switch
        assert (hm.annotations.val[0], hm.annotations.test[0]) == (
            f"hateful_memes/defaults/annotations/{val}.jsonl", f"hateful_memes/defaults/annotations/{test}.jsonl")
    mmimdb = OmegaConf.load(os.path.join(root, "mmimdb", "defaults.yaml")).dataset_config.mmimdb
    vocab_file = OmegaConf.to_container(mmimdb.processors.answer_processor.params)["vocab_file"]
    assert vocab_file.endswith("/mmimdb/defaults/extras/classes_mm_imdb.txt")
    ve = OmegaConf.load(os.path.join(root, "visual_entailment", "defaults.yaml")).dataset_config.visual_entailment
    assert ve.features.val[0] == "flickr30k/defaults/features/detectron.lmdb"
    assert list(ve.zoo_requirements) == ["flickr30k.defaults", "visual_entailment.defaults"]


@pytest.mark.parametrize("phase,files", [
    (2, ["dev_seen.jsonl", "dev_unseen.jsonl", "test_seen.jsonl", "test_unseen.jsonl", "train.jsonl"]),
    (1, ["dev.jsonl", "test.jsonl", "train.jsonl"]),
])
def test_mmf_convert_hm_converts_a_password_protected_zip(phase, files, tmp_path):
    zip_path = replicas.hateful_memes_zip(str(tmp_path / "hm.zip"), PASSWORD, sizes=(4, 2, 2), phase=phase)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(unpacked, pwd=PASSWORD.encode())
    result = convert_hm_zip(zip_path, str(tmp_path / "mmf"), "--bypass_checksum=1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    base = tmp_path / "mmf" / "datasets" / "hateful_memes" / "defaults"
    assert sorted(os.listdir(base / "annotations")) == files
    for name in files:
        assert (base / "annotations" / name).read_text() == (unpacked / "data" / name).read_text()
    for row in map(json.loads, (base / "annotations" / "train.jsonl").read_text().splitlines()):
        assert (base / "images" / row["img"]).is_file()


def test_mmf_convert_hm_names_what_is_wrong_with_a_zip(tmp_path):
    zip_path = replicas.hateful_memes_zip(str(tmp_path / "hm.zip"), PASSWORD, sizes=(2, 1, 1))
    result = convert_hm_zip(zip_path, str(tmp_path / "mmf"))
    assert result.returncode != 0
    assert "--bypass_checksum=1" in result.stderr and "c1363aae9649c79a" in result.stderr
    assert os.path.exists(zip_path)  # checked before rc10 moves it into images/
    work = tmp_path / "other"
    (work / "data" / "img").mkdir(parents=True)
    (work / "data" / "train.jsonl").write_text("{}\n")
    (work / "data" / "dev.jsonl").write_text("{}\n")
    subprocess.run([replicas.zip_binary(), "-q", "-r", "-P", PASSWORD, str(tmp_path / "other.zip"), "data"],
                   cwd=work, check=True)
    result = convert_hm_zip(str(tmp_path / "other.zip"), str(tmp_path / "mmf2"), "--bypass_checksum=1")
    assert result.returncode != 0
    assert "holds neither the phase-2 annotations" in result.stderr and "dev.jsonl, img, train.jsonl" in result.stderr


def test_the_checksum_list_accepts_the_phase_two_zip(tmp_path, monkeypatch):
    """rc10's own checksum code, fed the phase-2 zip's digest, accepts it with the shim's list only."""
    from mmf_cli import hm_convert

    from mmf_refnet.compat.hm_convert import PHASE_TWO_CHECKSUM

    class PhaseTwoDigest:
        def update(self, block):
            pass

        def hexdigest(self):
            return PHASE_TWO_CHECKSUM

    monkeypatch.setattr(hm_convert.hashlib, "sha256", PhaseTwoDigest)
    (tmp_path / "hm.zip").write_bytes(b"zip")
    converter = object.__new__(hm_convert.HMConverter)
    converter.checksum(str(tmp_path / "hm.zip"), converter.POSSIBLE_CHECKSUMS)
    with pytest.raises(AssertionError):
        converter.checksum(str(tmp_path / "hm.zip"), converter.POSSIBLE_CHECKSUMS[:3])


def test_no_remote_urls_in_tests():
    tests = os.path.dirname(os.path.abspath(__file__))
    for path in glob.glob(os.path.join(tests, "*.py")):
        with open(path) as handle:
            remote = [url for url in re.findall(r"https?://[^\s\"')]+", handle.read())
                      if not url.startswith(("http://127.0.0.1", "http://localhost"))]
        assert not remote, f"{path}: {remote}"


def test_a_zoo_vilbert_checkpoint_loads_into_the_refnet_ms_backbone(server, tmp_path):
    """checkpoint.resume_zoo (+ resume_pretrained): every backbone tensor is the checkpoint's, while
    fusion, classifier and refiner are exactly what a run without the zoo starts from."""
    import torch
    from omegaconf import OmegaConf

    from mmf_refnet.compat.zoo_download import sha256
    from tests import inprocess

    data = str(tmp_path / "data")
    replicas.mmimdb(data, sizes=(32, 16, 8))
    model_config = inprocess.configuration(tmp_path / "model", "refnet_ms", "mmimdb").model_config.refnet_ms
    url_path = "models/vilbert/vilbert.pretrained.cc_small.tar.gz"  # Table 1's "ViLBERT-cc small"
    served = os.path.join(server.root, tmp_path.name, url_path)
    checkpoint = replicas.vilbert_zoo_checkpoint(served, OmegaConf.to_container(model_config, resolve=True))
    zoo = zoo_with_hashes("models", {url_path: sha256(served)}, str(tmp_path / "models_zoo.yaml"))
    config = runner.tiny_config(str(tmp_path), "mmimdb", "refnet_ms",
                                {"model_config": {"refnet_ms": {"num_labels": NUM_LABELS["mmimdb"]}}})
    frozen = ("optimizer.params.lr=0", "training.max_updates=1")  # lr 0: the saved model is the loaded one
    finals = {}
    logs = {}
    for name, opts in (("zoo", ("checkpoint.resume_zoo=vilbert.pretrained.cc.small",
                                "checkpoint.resume_pretrained=True", f"env.model_zoo={zoo}")), ("fresh", ())):
        save = str(tmp_path / name)
        result = runner.run_mmf("mmf_run", config, data, save, *frozen, *opts,
                                env={"MMF_ZOO_MIRROR": f"{server.url}{tmp_path.name}/"})
        logs[name] = result.stdout + result.stderr + open(os.path.join(save, "train.log")).read()
        finals[name] = torch.load(os.path.join(save, "refnet_ms_final.pth"), map_location="cpu")
    assert server.requests[f"{tmp_path.name}/{url_path}"] == 1
    extracted = os.path.join(data, "models", "vilbert.pretrained.cc.small")
    assert {"config.yaml", "model.pth"} <= set(os.listdir(extracted))

    backbone = sorted(key for key in finals["zoo"] if key.startswith("model.bert."))
    assert backbone == sorted(key for key in checkpoint if key.startswith("model.bert."))
    for key in backbone:
        assert torch.equal(finals["zoo"][key], checkpoint[key]), key
        if finals["fresh"][key].numel() > 1:
            assert not torch.equal(finals["fresh"][key], checkpoint[key]), key
    head = [key for key in finals["zoo"] if not key.startswith("model.bert.")]
    assert {key.split(".")[1] for key in head} == {"fusion_norm", "fusion", "classifier", "refiner"}
    for key in head:
        assert torch.equal(finals["zoo"][key], finals["fresh"][key]), key
    assert f"pretrained_state_mapping model.bert <- model.bert: {len(backbone)} of {len(backbone)} tensors" in logs["zoo"]


def test_the_pretrained_mapping_is_reported_and_a_useless_one_refused(tmp_path):
    import torch

    from mmf_refnet.compat.pretrained_report import check
    from tests import inprocess

    model = inprocess.build(inprocess.configuration(tmp_path, "refnet_ms"), "refnet_ms")
    state = model.state_dict()
    backbone = {key: value for key, value in state.items() if key.startswith("model.bert.")}
    del backbone["model.bert.embeddings.word_embeddings.weight"]
    lines = check(model, state, backbone, {"model.bert": "model.bert", "model.fusion": "model.fusion"})
    assert lines == [f"model.bert <- model.bert: {len(backbone)} of {len(backbone) + 1} tensors; not in the "
                     "checkpoint: model.bert.embeddings.word_embeddings.weight", "model.fusion <- model.fusion: 0 of 2 tensors"]
    legacy = {key.replace("model.bert.", "bert.bert."): value for key, value in backbone.items()}  # rc10's old layout
    assert check(model, state, legacy, {"model.bert": "model.bert"})[0].startswith(f"model.bert <- model.bert: {len(backbone)}")
    with pytest.raises(ValueError, match=r"pairs no tensor .* visual_bert.encoder"):
        check(model, state, {"visual_bert.encoder.weight": torch.zeros(1)}, {"model.bert": "model.bert"})
