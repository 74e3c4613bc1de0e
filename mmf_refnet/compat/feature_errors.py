"""rc10's feature readers fail on a missing feature with context-free errors: the
LMDB reader raises a bare ``KeyError: b'01234'``, the npy reader a
``FileNotFoundError`` for one path with no hint of which annotation asked for it.
Reads now raise FileNotFoundError naming the feature name, the feature store(s)
searched and the annotation key that referenced it."""


class MissingFeatureError(FileNotFoundError):
    pass


def apply() -> None:
    from mmf.datasets.databases.features_database import FeaturesDatabase

    original = FeaturesDatabase._read_features_and_info
    if hasattr(original, "__wrapped__"):
        return

    def _read_features_and_info(self, feat_file):
        try:
            return original(self, feat_file)
        except (KeyError, FileNotFoundError, OSError) as error:
            stores = ", ".join(self.paths)
            raise MissingFeatureError(
                f"no features for '{feat_file}' (annotation key '{self.feature_key}') in {stores}: "
                f"{type(error).__name__}: {error}. Extract features for every image the annotations "
                "reference (e.g. `refnet extract-features`) or fix the annotation."
            ) from error

    _read_features_and_info.__wrapped__ = original
    FeaturesDatabase._read_features_and_info = _read_features_and_info
