"""A Hugging Face cache in huggingface_hub's on-disk layout, filled from local files.

``<cache>/models--<org>--<name>/``: ``blobs/<id>`` (a file's git blob SHA-1, or its
SHA-256 for files the hub keeps in LFS), ``refs/main`` (the commit id) and
``snapshots/<commit>/<file>`` (a relative symlink to its blob), as
``huggingface-cli download`` leaves it.
"""

import hashlib
import os

from mmf_refnet import assets

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx")
MINILM_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json")


def blob_id(name: str, data: bytes) -> str:
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def populate(cache_dir: str, repo_id: str, source_dir: str, files=MINILM_FILES) -> str:
    """Put ``files`` of ``source_dir`` into ``cache_dir`` as hub model ``repo_id``; returns the snapshot folder."""
    repo = os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))
    contents = {}
    for name in files:
        with open(os.path.join(source_dir, name), "rb") as handle:
            contents[name] = handle.read()
    commit = hashlib.sha1("".join(f"{n}:{blob_id(n, d)}" for n, d in sorted(contents.items())).encode()).hexdigest()
    snapshot = os.path.join(repo, "snapshots", commit)
    for folder in ("blobs", "refs", snapshot):
        os.makedirs(os.path.join(repo, folder), exist_ok=True)
    for name, data in contents.items():
        blob = os.path.join(repo, "blobs", blob_id(name, data))
        with open(blob, "wb") as handle:
            handle.write(data)
        os.symlink(os.path.relpath(blob, snapshot), os.path.join(snapshot, name))
    with open(os.path.join(repo, "refs", "main"), "w") as handle:
        handle.write(commit)
    return snapshot


def minilm_as(cache_dir: str, repo_id: str = "bert-base-uncased") -> str:
    """The MiniLM-L6 package's BERT (weights + bert-base-uncased's vocabulary) cached under ``repo_id``."""
    return populate(cache_dir, repo_id, assets.asset_path("minilm"))


def hub_env(home: str) -> dict:
    """Environment for a subprocess whose Hugging Face home (and hub cache) is ``home``."""
    return {"HF_HOME": home, "HF_HUB_CACHE": os.path.join(home, "hub"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}
