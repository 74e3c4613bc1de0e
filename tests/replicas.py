"""Tiny generated replicas of the on-disk formats MMF's dataset builders read.

Hateful Memes (jsonl + ``detectron.lmdb``), MM-IMDB (jsonl with ``plot``/``genres``/
``feature_path`` + lmdb + class list) and SNLI-VE (jsonl with ``sentence2``/
``Flikr30kID``/``gold_label`` + npy feature files), all under
``<data_dir>/datasets/<name>/defaults/`` as in our default dataset configs.

Labels follow a known rule so tests can check that training *learns*:
``rule="image"`` (label = the image's bit: any working model learns it) or
``rule="xor"`` (label = text bit XOR image bit: only the interaction of the two
modalities predicts it; each modality alone is at chance).
"""

import json
import os
import pickle

import lmdb
import numpy as np

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = ["a", "the", "this", "that", "meme", "photo", "picture", "some", "very", "really", "is", "of"]
BIT_WORDS = ("alpha", "omega")
GENRES = ["drama", "comedy", "action", "horror"]
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


def write_npy(directory: str, items: dict) -> None:
    """MMF's npy feature layout: <id>.npy (N x D) and <id>_info.npy (dict)."""
    os.makedirs(directory, exist_ok=True)
    for key, (features, info) in items.items():
        np.save(os.path.join(directory, f"{key}.npy"), features)
        np.save(os.path.join(directory, f"{key}_info.npy"), info, allow_pickle=True)


def write_jsonl(path: str, rows) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _bits(rng, count):
    return rng.integers(0, 2, count), rng.integers(0, 2, count)


def hateful_memes(data_dir: str, sizes=(64, 32, 32), rule: str = "image", seed: int = 0, test_labels: bool = False) -> str:
    rng = np.random.default_rng(seed)
    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    files = {"train": "train.jsonl", "val": "dev_unseen.jsonl", "test": "test_unseen.jsonl"}
    items, next_id = {}, 1000
    for split, count in zip(files, sizes):
        rows = []
        text_bits, image_bits = _bits(rng, count)
        for t, v in zip(text_bits, image_bits):
            next_id += 1
            items[f"{next_id:05d}"] = image_features(rng, int(v))
            row = {"id": next_id, "img": f"img/{next_id:05d}.png", "text": caption(rng, int(t))}
            if split != "test" or test_labels:
                row["label"] = label_for(rule, int(t), int(v))
            rows.append(row)
        write_jsonl(os.path.join(root, "annotations", files[split]), rows)
    write_lmdb(os.path.join(root, "features", "detectron.lmdb"), items)
    return root


def mmimdb(data_dir: str, sizes=(64, 32, 32), seed: int = 0) -> str:
    """Genres: 'drama' iff image bit, 'comedy' iff text bit, plus a random third genre."""
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
            genres = [g for g, on in (("drama", v), ("comedy", t), ("action", rng.integers(0, 2))) if on] or ["horror"]
            rows.append({"id": key, "plot": [caption(rng, int(t))], "genres": genres, "feature_path": f"{key}.npy"})
        write_jsonl(os.path.join(root, "annotations", files[split]), rows)
    write_lmdb(os.path.join(root, "features", "features.lmdb"), items)
    os.makedirs(os.path.join(root, "extras"), exist_ok=True)
    with open(os.path.join(root, "extras", "classes.txt"), "w") as handle:
        handle.write("\n".join(GENRES) + "\n")
    return root


def visual_entailment(data_dir: str, sizes=(60, 30, 30), seed: int = 0) -> str:
    """3 classes: label = image bit + text bit (0, 1 or 2)."""
    rng = np.random.default_rng(seed)
    root = os.path.join(data_dir, "datasets", "visual_entailment", "defaults")
    files = {"train": "snli_ve_train.jsonl", "val": "snli_ve_dev.jsonl", "test": "snli_ve_test.jsonl"}
    items, next_id = {}, 0
    for split, count in zip(files, sizes):
        rows = []
        text_bits, image_bits = _bits(rng, count)
        for t, v in zip(text_bits, image_bits):
            next_id += 1
            image_id = f"{3000000 + next_id}"
            items[image_id] = image_features(rng, int(v))
            rows.append({"sentence2": caption(rng, int(t)), "Flikr30kID": f"{image_id}.jpg", "gold_label": VE_LABELS[int(t + v)]})
        write_jsonl(os.path.join(root, "annotations", files[split]), rows)
    write_npy(os.path.join(root, "features", "flickr30k"), items)
    return root


def tiny_vilbert_overrides(vocab: int) -> dict:
    """A ViLBERT small enough to train in seconds on CPU."""
    return {
        "vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64, "v_feature_size": FEATURE_DIM,
        "v_hidden_size": 32, "v_num_hidden_layers": 2, "v_num_attention_heads": 2, "v_intermediate_size": 64,
        "bi_hidden_size": 32, "bi_num_attention_heads": 2, "bi_intermediate_size": 64,
        "v_biattention_id": [0, 1], "t_biattention_id": [0, 1], "bert_model_name": None,
        "hidden_dropout_prob": 0.0, "v_hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "v_attention_probs_dropout_prob": 0.0,
    }
