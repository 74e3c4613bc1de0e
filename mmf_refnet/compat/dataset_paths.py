"""rc10 reports missing data badly: the Hateful Memes builder asserts with a bare
link, other datasets fail deep inside a reader (or try a zoo download, which
cannot work offline). mmf-refnet ships an empty dataset zoo, so nothing is ever
downloaded; here every annotation/feature/image path a dataset is about to open
is checked first, and a missing one raises FileNotFoundError naming the config
key, the expected path and how to obtain the data."""

import os

HOW_TO_OBTAIN = {
    "hateful_memes": (
        "Download the Hateful Memes zip from the challenge site and convert it with "
        "`mmf_convert_hm --zip_file=<zip> --password=<password>` (it writes "
        "<env.data_dir>/datasets/hateful_memes/defaults/...), then extract features"
    ),
    "mmimdb": "Place the MM-IMDB annotations (jsonl) and region features in this layout",
    "visual_entailment": "Place the SNLI-VE annotations (jsonl) and Flickr30k region features in this layout",
}


def _hint(dataset_name: str) -> str:
    return HOW_TO_OBTAIN.get(dataset_name, "Create the file or point the config key at the right place")


def missing_path_error(dataset_name, dataset_type, attribute, path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{dataset_name} ({dataset_type} split): dataset_config.{dataset_name}.{attribute}."
        f"{dataset_type} points at '{path}', which does not exist. {_hint(dataset_name)}. "
        "mmf-refnet never downloads data."
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
            f"which does not exist. {_hint('hateful_memes')}. mmf-refnet never downloads data."
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
