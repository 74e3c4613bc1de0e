"""Tiny generated replicas of the data MMF's dataset builders read, in MMF's real
on-disk layouts (file names, formats and folders as MMF's dataset zoo and
``mmf_convert_hm`` write them under ``<data_dir>/datasets/``; upstream MMF's zoo and
dataset YAML are the reference, not this project's configs):

* Hateful Memes (``hateful_memes/defaults/``): ``annotations/`` as ``mmf_convert_hm``
  writes them (phase 2: train, dev_seen, dev_unseen, test_seen, test_unseen .jsonl;
  phase 1: train, dev, test .jsonl; rows ``id``/``img``/``text``/``label``), zoo
  ``features/detectron.lmdb`` and ``extras/vocabs/vocabulary_100k.txt``. Also the
  challenge zip itself (``data/*.jsonl`` + ``data/img/``, password-protected).
* MM-IMDB (``mmimdb/defaults/``): ``annotations/{train,dev,test}.jsonl`` (``plot``,
  ``genres``, ``feature_path``), ``features/features.lmdb``,
  ``extras/classes_mm_imdb.txt`` and ``extras/vocab_mmimdb.txt``.
* SNLI-VE: ``visual_entailment/defaults/annotations/snli_ve_{train,dev,test}.jsonl``
  (SNLI-VE's fields: ``Flikr30kID``, ``sentence1``, ``sentence2``, ``gold_label``, ...),
  region features from Flickr30k's zoo entry in ``flickr30k/defaults/features/detectron.lmdb``.

:func:`zoo_tarballs` packs a replica the way MMF's zoo serves it (one tarball per
resource, named by its ``mmf://`` path).

Labels follow a known rule so tests can check that training *learns*:
``rule="image"`` (label = the image's bit: any working model learns it) or
``rule="xor"`` (label = text bit XOR image bit: only the interaction of the two
modalities predicts it; each modality alone is at chance).
"""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import tarfile
import tempfile

import lmdb
import numpy as np

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = ["a", "the", "this", "that", "meme", "photo", "picture", "some", "very", "really", "is", "of"]
BIT_WORDS = ("alpha", "omega")
GENRES = ["drama", "comedy", "action", "horror"]
# The real MM-IMDB's 23 genres (its classes file; the project configs' num_labels 24 = these + MMF's <unk>)
MMIMDB_GENRES = ["drama", "comedy", "romance", "thriller", "crime", "action", "adventure", "horror", "documentary",
                 "mystery", "sci-fi", "fantasy", "family", "biography", "war", "history", "music", "animation",
                 "musical", "western", "sport", "short", "film-noir"]
VE_LABELS = ["entailment", "neutral", "contradiction"]
N_BOXES = 6
FEATURE_DIM = 16
IMAGE_SIZE = (100, 80)


def write_tokenizer(directory: str) -> str:
    """A local BERT WordPiece tokenizer (vocab.txt) that AutoTokenizer loads offline."""
    os.makedirs(directory, exist_ok=True)
    words = SPECIAL_TOKENS + sorted(set(FILLER + list(BIT_WORDS) + GENRES + ["dog", "cat", "sky"]))
    with open(os.path.join(directory, "vocab.txt"), "w") as handle:
        handle.write("\n".join(words) + "\n")
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as handle:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64}, handle)
    return directory


def vocab_size() -> int:
    return len(SPECIAL_TOKENS) + len(set(FILLER + list(BIT_WORDS) + GENRES + ["dog", "cat", "sky"]))


def _boxes(rng):
    width, height = IMAGE_SIZE
    x1 = rng.uniform(0, width / 2, N_BOXES)
    y1 = rng.uniform(0, height / 2, N_BOXES)
    return np.stack([x1, y1, x1 + width / 3, y1 + height / 3], axis=1).astype(np.float32)


def image_features(rng, bit: int, strength: float = 2.0):
    """Region features whose first 4 dims carry ``bit`` (+strength or -strength)."""
    features = rng.normal(0, 1, (N_BOXES, FEATURE_DIM)).astype(np.float32)
    features[:, :4] += strength if bit else -strength
    info = {"bbox": _boxes(rng), "image_width": IMAGE_SIZE[0], "image_height": IMAGE_SIZE[1], "num_boxes": N_BOXES}
    return features, info


def caption(rng, bit: int) -> str:
    words = list(rng.choice(FILLER, size=4)) + [BIT_WORDS[bit]]
    rng.shuffle(words)
    return " ".join(words)


def label_for(rule: str, text_bit: int, image_bit: int) -> int:
    if rule == "image":
        return image_bit
    if rule == "xor":
        return text_bit ^ image_bit
    raise ValueError(rule)


def write_lmdb(path: str, items: dict) -> None:
    """MMF's LMDB feature layout: b'keys' -> pickled id list; id -> pickled info dict."""
    os.makedirs(path, exist_ok=True)
    env = lmdb.open(path, map_size=1 << 28)
    with env.begin(write=True) as txn:
        for key, (features, info) in items.items():
            txn.put(key.encode(), pickle.dumps({"features": features, **info}))
        txn.put(b"keys", pickle.dumps([key.encode() for key in items]))
    env.close()


def write_jsonl(path: str, rows) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _bits(rng, count):
    return rng.integers(0, 2, count), rng.integers(0, 2, count)


HM_PHASE_FILES = {
    2: {"train": "train.jsonl", "val": "dev_unseen.jsonl", "test": "test_unseen.jsonl"},
    1: {"train": "train.jsonl", "val": "dev.jsonl", "test": "test.jsonl"},
}
HM_SEEN_FILES = {"val": "dev_seen.jsonl", "test": "test_seen.jsonl"}


def _hm_rows(rng, count, split, rule, test_labels, ids):
    rows, items = [], {}
    text_bits, image_bits = _bits(rng, count)
    for t, v in zip(text_bits, image_bits):
        row_id = next(ids)
        items[f"{row_id:05d}"] = image_features(rng, int(v))
        row = {"id": row_id, "img": f"img/{row_id:05d}.png", "text": caption(rng, int(t))}
        if split != "test" or test_labels:
            row["label"] = label_for(rule, int(t), int(v))
        rows.append(row)
    return rows, items


def hateful_memes_annotations(rng, sizes, rule="image", test_labels=False, phase=2):
    """{file name: rows} of a challenge zip (phase 1 or 2) and the region features of its images."""
    ids = iter(range(1001, 100000))
    files, items = {}, {}
    for split, count in zip(("train", "val", "test"), sizes):
        rows, split_items = _hm_rows(rng, count, split, rule, test_labels, ids)
        files[HM_PHASE_FILES[phase][split]] = rows
        items.update(split_items)
    if phase == 2:  # the seen splits come last so that the unseen ones match earlier versions of the replica
        for split, name in HM_SEEN_FILES.items():
            rows, split_items = _hm_rows(rng, sizes[2 if split == "test" else 1], split, rule, test_labels, ids)
            files[name] = rows
            items.update(split_items)
    return files, items


def hateful_memes(data_dir: str, sizes=(64, 32, 32), rule: str = "image", seed: int = 0, test_labels: bool = False,
                  phase: int = 2) -> str:
    """What mmf_convert_hm (annotations) and MMF's zoo (features, extras) put under hateful_memes/defaults/."""
    rng = np.random.default_rng(seed)
    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    files, items = hateful_memes_annotations(rng, sizes, rule, test_labels, phase)
    for name, rows in files.items():
        write_jsonl(os.path.join(root, "annotations", name), rows)
    write_lmdb(os.path.join(root, "features", "detectron.lmdb"), items)
    write_lines(os.path.join(root, "extras", "vocabs", "vocabulary_100k.txt"), vocabulary())
    return root


def hateful_memes_zip(path: str, password: str, sizes=(16, 8, 8), phase: int = 2, seed: int = 0) -> str:
    """The challenge's password-protected zip: data/<jsonl files> and data/img/<id>.png (made with `zip -P`)."""
    from PIL import Image

    files, _ = hateful_memes_annotations(np.random.default_rng(seed), sizes, phase=phase)
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "data")
        for name, rows in files.items():
            write_jsonl(os.path.join(data, name), rows)
            for row in rows:
                os.makedirs(os.path.join(data, "img"), exist_ok=True)
                Image.new("RGB", (8, 8), (row["id"] % 256, 0, 0)).save(os.path.join(data, row["img"]))
        for name in ("README.md", "LICENSE.txt"):
            write_lines(os.path.join(data, name), ["Hateful Memes replica"])
        subprocess.run([zip_binary(), "-q", "-r", "-P", password, os.path.abspath(path), "data"], cwd=work, check=True)
    return path


def zip_binary() -> str:
    found = shutil.which("zip")
    if found is None:
        raise FileNotFoundError("the `zip` program is needed to build password-protected zips (apt-get install zip)")
    return found


def mmimdb(data_dir: str, sizes=(64, 32, 32), seed: int = 0, classes=GENRES) -> str:
    """Genres: 'Drama' iff image bit, 'Comedy' iff text bit, plus a random third genre (classes file lower-case,
    as MMF's answer processor lower-cases the rows' genres); the classes file lists ``classes``
    (``MMIMDB_GENRES``: the real dataset's, for its project configs as they are)."""
    rng = np.random.default_rng(seed)
    root = os.path.join(data_dir, "datasets", "mmimdb", "defaults")
    files = {"train": "train.jsonl", "val": "dev.jsonl", "test": "test.jsonl"}
    items, next_id = {}, 0
    for split, count in zip(files, sizes):
        rows = []
        text_bits, image_bits = _bits(rng, count)
        for t, v in zip(text_bits, image_bits):
            next_id += 1
            key = f"tt{next_id:07d}"
            items[key] = image_features(rng, int(v))
            genres = [g for g, on in ((GENRES[0], v), (GENRES[1], t), (GENRES[2], rng.integers(0, 2))) if on]
            genres = [genre.capitalize() for genre in genres or [GENRES[3]]]
            rows.append({"id": key, "plot": [caption(rng, int(t))], "genres": genres, "feature_path": f"{key}.npy"})
        write_jsonl(os.path.join(root, "annotations", files[split]), rows)
    write_lmdb(os.path.join(root, "features", "features.lmdb"), items)
    write_lines(os.path.join(root, "extras", "classes_mm_imdb.txt"), classes)
    write_lines(os.path.join(root, "extras", "vocab_mmimdb.txt"), vocabulary())
    return root


def visual_entailment(data_dir: str, sizes=(60, 30, 30), seed: int = 0) -> str:
    """3 classes: label = image bit + text bit (0, 1 or 2); features in Flickr30k's zoo folder."""
    rng = np.random.default_rng(seed)
    datasets = os.path.join(data_dir, "datasets")
    root = os.path.join(datasets, "visual_entailment", "defaults")
    files = {"train": "snli_ve_train.jsonl", "val": "snli_ve_dev.jsonl", "test": "snli_ve_test.jsonl"}
    items, next_id = {}, 0
    for split, count in zip(files, sizes):
        rows = []
        text_bits, image_bits = _bits(rng, count)
        for t, v in zip(text_bits, image_bits):
            next_id += 1
            image_id = f"{3000000 + next_id}"
            items[image_id] = image_features(rng, int(v))
            label = VE_LABELS[int(t + v)]
            rows.append({"Flikr30kID": f"{image_id}.jpg", "captionID": f"{image_id}.jpg#0",
                         "pairID": f"{image_id}.jpg#0r1{label[0]}", "sentence1": caption(rng, int(v)),
                         "sentence2": caption(rng, int(t)), "gold_label": label, "annotator_labels": [label]})
        write_jsonl(os.path.join(root, "annotations", files[split]), rows)
    write_lmdb(os.path.join(datasets, "flickr30k", "defaults", "features", "detectron.lmdb"), items)
    write_lines(os.path.join(root, "extras", "vocabs", "vocabulary_100k.txt"), vocabulary())
    return root


# How MMF's zoo serves each dataset: (zoo url path, folder packed, arcname in the tarball), relative to
# <data_dir>/datasets/. A resource is extracted into the folder its zoo group names (features/,
# annotations/) or into the variation folder (extras), so the tarball holds that folder's contents.
ZOO_LAYOUT = {
    "hateful_memes": [
        ("datasets/hateful_memes/defaults/features/features_2020_10_01.tar.gz",
         "hateful_memes/defaults/features/detectron.lmdb", "detectron.lmdb"),
        ("datasets/hateful_memes/defaults/extras.tar.gz", "hateful_memes/defaults/extras", "extras"),
    ],
    "mmimdb": [
        ("datasets/mmimdb/defaults/features/features.tar.gz", "mmimdb/defaults/features/features.lmdb",
         "features.lmdb"),
        ("datasets/mmimdb/defaults/annotations/annotations.tar.gz", "mmimdb/defaults/annotations", "."),
        ("datasets/mmimdb/defaults/extras.tar.gz", "mmimdb/defaults/extras", "extras"),
    ],
    "visual_entailment": [
        ("datasets/flickr30k/defaults/features/features.tar.gz", "flickr30k/defaults/features/detectron.lmdb",
         "detectron.lmdb"),
        ("datasets/visual_entailment/defaults/annotations/annotations.tar.gz",
         "visual_entailment/defaults/annotations", "."),
        ("datasets/hateful_memes/defaults/extras.tar.gz", "visual_entailment/defaults/extras", "extras"),
    ],
}


def zoo_tarballs(data_dir: str, dataset: str, serve_root: str) -> dict:
    """Pack a replica as MMF's zoo serves it, under ``serve_root/<zoo url path>``; {url path: sha256}."""
    hashes = {}
    for url_path, folder, arcname in ZOO_LAYOUT[dataset]:
        target = os.path.join(serve_root, url_path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with tarfile.open(target, "w:gz") as tar:
            source = os.path.join(data_dir, "datasets", folder)
            if arcname == ".":
                for name in sorted(os.listdir(source)):
                    tar.add(os.path.join(source, name), arcname=name)
            else:
                tar.add(source, arcname=arcname)
        with open(target, "rb") as handle:
            hashes[url_path] = hashlib.sha256(handle.read()).hexdigest()
    return hashes


def vilbert_zoo_checkpoint(path: str, model_config: dict, seed: int = 0) -> dict:
    """A ViLBERT checkpoint in the format of MMF's model zoo (``vilbert.pretrained.*``): a tarball
    holding the run's ``config.yaml`` (``model_config.vilbert``) and one checkpoint, ``model.pth``,
    whose state dict is MMF's ViLBERT pretraining model's (``model.bert.*`` backbone,
    ``model.cls.*`` pretraining heads). Every tensor is random (no two alike); returns the state dict."""
    import torch
    import yaml
    from mmf.models.vilbert import BertPreTrainingHeads, ViLBERTBase
    from transformers.models.bert.configuration_bert import BertConfig

    pretraining_heads = {"v_target_size": 1601, "visual_target": 0}  # MMF's ViLBERT defaults; refnet has no such heads
    vilbert_config = {**pretraining_heads, **model_config, "training_head_type": "pretraining", "fusion_method": "mul"}
    bert_config = BertConfig.from_dict(vilbert_config)
    pretraining = torch.nn.Module()
    pretraining.model = torch.nn.Module()
    pretraining.model.bert = ViLBERTBase(bert_config)
    pretraining.model.cls = BertPreTrainingHeads(bert_config)
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(value.shape, generator=generator).to(value.dtype) if value.is_floating_point() else value
             for key, value in pretraining.state_dict().items()}
    with tempfile.TemporaryDirectory() as work:
        torch.save(state, os.path.join(work, "model.pth"))
        with open(os.path.join(work, "config.yaml"), "w") as handle:
            yaml.safe_dump({"model": "vilbert", "model_config": {"vilbert": vilbert_config}}, handle)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tarfile.open(path, "w:gz") as tar:
            for name in ("config.yaml", "model.pth"):
                tar.add(os.path.join(work, name), arcname=name)
    return state


def vocabulary():
    return sorted(set(FILLER + list(BIT_WORDS) + ["dog", "cat", "sky"]))


def write_lines(path: str, lines) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def tiny_vilbert_overrides(vocab: int) -> dict:
    """A ViLBERT small enough to train in seconds on CPU."""
    return {
        "vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64, "v_feature_size": FEATURE_DIM,
        "v_hidden_size": 32, "v_num_hidden_layers": 2, "v_num_attention_heads": 2, "v_intermediate_size": 64,
        "bi_hidden_size": 32, "bi_num_attention_heads": 2,
        "v_biattention_id": [0, 1], "t_biattention_id": [0, 1], "bert_model_name": None,
        "hidden_dropout_prob": 0.0, "v_hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "v_attention_probs_dropout_prob": 0.0,
    }
