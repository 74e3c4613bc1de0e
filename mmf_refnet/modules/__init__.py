"""Building blocks of the ReFNet models (no MMF patches live here)."""
