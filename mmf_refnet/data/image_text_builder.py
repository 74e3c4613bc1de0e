"""MMF dataset builder ``image_text``: your own (id, img, text, label) rows (``data/image_text``).

Nothing is downloaded. Before a split loads, its jsonl is read and checked (bad lines,
missing keys, repeated ids), every row's image must have features, and the model's
``num_labels`` must equal the number of classes; each problem is named with the
config key, the file and the fix.
"""

import os

from mmf.common.registry import registry
from mmf.datasets.mmf_dataset_builder import MMFDatasetBuilder

from mmf_refnet.data import own_data
from mmf_refnet.data.image_text import DATASET_NAME, ImageTextDataset, class_list

CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "datasets",
                           "image_text.yaml")


def split_paths(config, attribute: str, dataset_type: str) -> list:
    paths = config.get(attribute, {}).get(dataset_type, [])
    paths = [paths] if isinstance(paths, str) else list(paths)
    return [os.path.join(str(config.data_dir), str(path)) for path in paths]


def check_num_labels(config) -> None:
    """The model being trained must give one score per class."""
    global_config = registry.get("config", no_warning=True)
    model = global_config.get("model") if global_config is not None else None
    model_config = global_config.get("model_config", {}).get(model) if model else None
    if model_config is None or model_config.get("num_labels") is None:
        return
    classes = class_list(config)
    if int(model_config.num_labels) != len(classes):
        raise ValueError(f"model_config.{model}.num_labels is {model_config.num_labels} but dataset_config."
                         f"{DATASET_NAME}.classes lists {len(classes)} classes {classes}: set "
                         f"model_config.{model}.num_labels={len(classes)}")


@registry.register_builder(DATASET_NAME)
class ImageTextBuilder(MMFDatasetBuilder):
    def __init__(self, *args, **kwargs):
        super().__init__(DATASET_NAME, ImageTextDataset)

    @classmethod
    def config_path(cls):
        return CONFIG_PATH

    def build(self, config, dataset_type="train", *args, **kwargs):
        """Check the split's files (the dataset checks labels against ``classes``)."""
        check_num_labels(config)
        annotations = split_paths(config, "annotations", dataset_type)
        features = split_paths(config, "features", dataset_type)
        if not annotations or not features:
            key = "annotations" if not annotations else "features"
            raise ValueError(f"dataset_config.{DATASET_NAME}.{key}.{dataset_type} is empty")
        for path in annotations:
            try:
                rows = own_data.read_rows(path)
                own_data.check_features(rows, features[0], f"dataset_config.{DATASET_NAME}.annotations."
                                        f"{dataset_type} ({path})")
            except own_data.OwnDataError as error:
                raise ValueError(str(error)) from None

    def update_registry_for_model(self, config):
        registry.register(f"{DATASET_NAME}_num_final_outputs", len(class_list(config)))
