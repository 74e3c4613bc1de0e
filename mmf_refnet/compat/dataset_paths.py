"""rc10 reports missing data badly: the Hateful Memes builder asserts with a bare
link, other datasets fail deep inside a reader. Here every annotation/feature/image
path a dataset is about to open is checked first, and a missing one raises
FileNotFoundError naming the config key, the expected path and how to obtain the
data (what MMF's dataset zoo provides is downloaded before this check runs, see
zoo_when_missing; what is still missing is data the zoo does not serve)."""

import os

ZOO_NOTE = (
    "Files that MMF's dataset zoo serves are downloaded when missing (env.zoo_mirror sets a mirror); "
    "if an earlier download left a .built.json marker in that folder, delete the marker to download again"
)
HOW_TO_OBTAIN = {
    "hateful_memes": (
        "The annotations and images come from the Hateful Memes challenge zip (phase 1 or 2): convert it with "
        "`mmf_convert_hm --zip_file=<zip> --password=<password>`, which writes "
        "<env.data_dir>/datasets/hateful_memes/defaults/annotations/*.jsonl and images/. A phase-1 zip has "
        "dev.jsonl/test.jsonl: set dataset_config.hateful_memes.annotation_set=phase1 (phase 2: unseen, the "
        "default, or seen). The region features (features/detectron.lmdb) come from MMF's dataset zoo"
    ),
    "mmimdb": "MMF's dataset zoo entry 'mmimdb' serves the annotations, features and extras in this layout",
    "visual_entailment": (
        "MMF's dataset zoo serves the SNLI-VE annotations (visual_entailment.defaults) and the Flickr30k region "
        "features (flickr30k.defaults) in this layout"
    ),
}


def _hint(dataset_name: str) -> str:
    return HOW_TO_OBTAIN.get(dataset_name, "Create the file or point the config key at the right place")


def missing_path_error(dataset_name, dataset_type, attribute, path) -> FileNotFoundError:
    zoo_note = f" {ZOO_NOTE}." if dataset_name in HOW_TO_OBTAIN else ""
    return FileNotFoundError(
        f"{dataset_name} ({dataset_type} split): dataset_config.{dataset_name}.{attribute}."
        f"{dataset_type} points at '{path}', which does not exist. {_hint(dataset_name)}.{zoo_note}"
    )


def check_paths(dataset_name, dataset_type, attribute, joined_paths) -> None:
    for path in joined_paths.split(","):
        if not os.path.exists(path):
            raise missing_path_error(dataset_name, dataset_type, attribute, path)


def _check_hateful_memes_layout(builder) -> None:
    from mmf.utils.configuration import get_mmf_env

    expected = os.path.join(
        get_mmf_env(key="data_dir"), "datasets", builder.dataset_name, "defaults", "annotations", "train.jsonl"
    )
    if not os.path.exists(expected):
        raise FileNotFoundError(
            f"{builder.dataset_name}: MMF's Hateful Memes builder requires '{expected}' "
            f"(<env.data_dir>/datasets/{builder.dataset_name}/defaults/annotations/train.jsonl), "
            f"which does not exist. {_hint('hateful_memes')}."
        )


def apply() -> None:
    from mmf.datasets.builders.hateful_memes.builder import HatefulMemesBuilder
    from mmf.datasets.mmf_dataset import MMFDataset

    original_path = MMFDataset._get_path_based_on_index
    original_build = HatefulMemesBuilder.build

    def _get_path_based_on_index(self, config, attribute, index):
        path = original_path(self, config, attribute, index)
        check_paths(self.dataset_name, self.dataset_type, attribute, path)
        return path

    def build(self, config, *args, **kwargs):
        _check_hateful_memes_layout(self)
        return original_build(self, config, *args, **kwargs)

    MMFDataset._get_path_based_on_index = _get_path_based_on_index
    HatefulMemesBuilder.build = build
