"""rc10's feature readers fail on bad features with context-free errors, or not at all:

* a missing feature: the LMDB reader raises a bare ``KeyError: b'01234'``, the npy
  reader a ``FileNotFoundError`` for one path with no hint of which annotation asked;
* an LMDB key listed in ``keys`` but without a value: ``TypeError: a bytes-like
  object is required, not 'NoneType'`` from ``pickle.loads``;
* a feature of the wrong width: read fine, then ``RuntimeError: The expanded size
  of the tensor ...`` when MMF's ``SampleList`` stacks the batch;
* NaN/inf in a feature: read fine; in a val/test split it ends the run after
  training with sklearn's ``Input contains NaN``.

Every read now names the feature, the store(s) searched and the annotation key;
each feature is checked for its width (the model's ``v_feature_size``, else the
first feature read) and for non-finite values as it is read, so the error comes
with the first batch that holds it instead of after training.
"""

import pickle

import torch


class MissingFeatureError(FileNotFoundError):
    pass


class BadFeatureError(ValueError):
    pass


def expected_width(database, first_width: int):
    """(width, where it comes from): the model's ``v_feature_size``, else the first feature's width."""
    if getattr(database, "_refnet_width", None) is None:
        from mmf.common.registry import registry

        config = registry.get("config")
        model = config.get("model") if config is not None else None
        width = config.model_config.get(model, {}).get("v_feature_size") if model else None
        if isinstance(width, int):
            database._refnet_width = (width, f"model_config.{model}.v_feature_size")
        else:
            database._refnet_width = (first_width, "the width of the first feature read")
    return database._refnet_width


def check_features(database, feat_file: str, features) -> None:
    for store, feature in zip(database.paths, features):
        feature = torch.as_tensor(feature)  # rc10's readers return tensors; other readers may return arrays
        width, source = expected_width(database, feature.shape[-1])
        if feature.shape[-1] != width:
            raise BadFeatureError(
                f"feature '{feat_file}' in {store} has width {feature.shape[-1]} (shape {tuple(feature.shape)}); "
                f"expected {width} ({source}). Extract every image's features with the same extractor, or set the "
                "model's v_feature_size to the features' width.")
        finite = torch.isfinite(feature)
        if not bool(finite.all()):
            region, dim = (int(i) for i in (~finite).nonzero()[0])
            raise BadFeatureError(
                f"feature '{feat_file}' in {store} holds NaN/inf ({int((~finite).sum())} of {feature.numel()} values, "
                f"the first at region {region}, dim {dim}); re-extract the features of this image.")


def apply() -> None:
    from mmf.datasets.databases.features_database import FeaturesDatabase

    original = FeaturesDatabase._read_features_and_info
    if hasattr(original, "__wrapped__"):
        return

    def _read_features_and_info(self, feat_file):
        stores = ", ".join(self.paths)
        try:
            features, infos = original(self, feat_file)
        except (KeyError, FileNotFoundError, OSError) as error:
            raise MissingFeatureError(
                f"no features for '{feat_file}' (annotation key '{self.feature_key}') in {stores}: "
                f"{type(error).__name__}: {error}. Extract features for every image the annotations "
                "reference (e.g. `refnet extract-features`) or fix the annotation."
            ) from error
        except (TypeError, EOFError, pickle.UnpicklingError) as error:
            raise BadFeatureError(
                f"the entry for '{feat_file}' (annotation key '{self.feature_key}') in {stores} is empty or "
                f"unreadable ({type(error).__name__}: {error}): the store lists it but holds no features for it. "
                "Rewrite the store (re-extract the features)."
            ) from error
        check_features(self, feat_file, features)
        return features, infos

    _read_features_and_info.__wrapped__ = original
    FeaturesDatabase._read_features_and_info = _read_features_and_info
