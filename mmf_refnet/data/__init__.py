"""Offline demo data for mmf-refnet.

* ``emoji``         -- the vendored Noto emoji atlas + index (``emoji_assets/``).
* ``vendor_emoji``  -- regenerates ``emoji_assets/`` from the npm package.
* ``features``      -- EfficientNet-Lite0 grid "region" features in MMF's
  ``.npy`` + ``_info.npy`` layout (``refnet extract-features``).
* ``emoji_memes``   -- builds/validates the "emoji memes" dataset in the
  Hateful Memes on-disk layout.
* ``own_data``      -- ``refnet own-data-config``: checks and splits your own
  (id, img, text, label) jsonl and writes its MMF config.
* ``image_text`` / ``image_text_builder`` -- the MMF dataset of such rows.
* ``text_padding``  -- each batch's text only as long as its longest row
  (``training.text_padding``; mixed into the datasets of ``label_fraction``).

Kept import-light on purpose (no torch / mmf here): submodules are imported
only by the code that needs them.
"""
