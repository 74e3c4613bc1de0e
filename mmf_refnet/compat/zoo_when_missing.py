"""rc10's ``MMFDatasetBuilder.build`` consults the dataset zoo on every run whose
download folders lack a ``.built.json`` marker (the ``zoo_requirements``, or the
dataset's own key when that list is empty) and fetches every resource group the
entry lists. Data placed by hand in MMF's layout (or written by ``mmf_convert_hm``)
has no marker, so rc10 downloads gigabytes it does not need, and fails offline.

Here a zoo entry's resource group (``features``, ``images``, ``annotations``) is
downloaded only when a file of that group named by the dataset config is missing,
and the entry's ``extras`` come with it (or alone, when a processor's vocabulary file
is missing). With every file in place the zoo is not consulted. A download error
names the config key and the missing path that asked for it.
"""

import collections.abc
import os

GROUPS = ("features", "images", "annotations")


def configured_paths(config, dataset_name: str, group: str):
    """(config key, absolute path) for every file of ``group`` the dataset config names."""
    paths = []
    for split, entries in (config.get(group) or {}).items():
        entries = [entries] if isinstance(entries, str) else list(entries or [])
        for entry in entries:
            for part in str(entry).split(","):
                paths.append((f"dataset_config.{dataset_name}.{group}.{split}", os.path.join(config.data_dir, part)))
    return paths


def vocabulary_paths(node, key: str):
    """(config key, path) of every absolute ``vocab_file`` under the processors."""
    found = []
    if isinstance(node, collections.abc.Mapping):
        for name, value in node.items():
            child = f"{key}.{name}"
            if name == "vocab_file" and isinstance(value, str) and os.path.isabs(value):
                found.append((child, value))
            else:
                found += vocabulary_paths(value, child)
    return found


def missing_files(config, dataset_name: str) -> dict:
    """{group: [(config key, path), ...]} of files the dataset config names that do not exist."""
    groups = [group for group in GROUPS if group == "annotations" or config.get(f"use_{group}", False)]
    missing = {group: [item for item in configured_paths(config, dataset_name, group) if not os.path.exists(item[1])]
               for group in groups}
    processors = config.get("processors") or {}
    missing["extras"] = [item for item in vocabulary_paths(processors, f"dataset_config.{dataset_name}.processors")
                         if not os.path.exists(item[1])]
    return missing


def downloads(resources, missing: dict):
    """(subfolder, resources) to fetch: the groups with missing files, then the extras if anything is fetched."""
    if not isinstance(resources, collections.abc.Mapping):  # a plain list: the whole entry
        return [("", resources)] if any(missing.values()) else []
    wanted = [(group, resources[group]) for group in GROUPS if missing.get(group) and resources.get(group)]
    if resources.get("extras") and (wanted or missing["extras"]):
        wanted.append(("", resources["extras"]))
    return wanted


def apply() -> None:
    from mmf.datasets.mmf_dataset_builder import MMFDatasetBuilder
    from mmf.utils import download
    from mmf.utils.configuration import get_mmf_env, get_zoo_config
    from mmf.utils.general import get_absolute_path

    from .zoo_download import ZooDownloadError

    def _download_requirement(self, config, requirement_key, requirement_variation="defaults"):
        version, resources = get_zoo_config(requirement_key, requirement_variation, self.zoo_config_path,
                                            self.zoo_type)
        if resources is None:
            return
        name, _, variation = requirement_key.partition(".")
        folder = get_absolute_path(os.path.join(get_mmf_env("data_dir"), "datasets", name,
                                                variation.split(".")[0] or requirement_variation))
        missing = missing_files(config, self.dataset_name)
        for subfolder, group in downloads(resources, missing):
            key, path = next(item for items in (missing.get(subfolder or "extras"), *missing.values())
                             if items for item in items)
            try:
                download.download_resources(group, os.path.join(folder, subfolder), version)
            except ZooDownloadError as error:
                raise ZooDownloadError(
                    f"{key} names {path}, which is missing, so MMF's dataset zoo entry '{requirement_key}' "
                    f"({subfolder or 'extras'}) is downloaded into {os.path.join(folder, subfolder)}.\n{error}"
                ) from error

    MMFDatasetBuilder._download_requirement = _download_requirement
