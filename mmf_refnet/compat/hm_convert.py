"""rc10's ``mmf_convert_hm`` (``mmf_cli/hm_convert.py``) knows only the phase-1
Hateful Memes zip: it requires ``data/{train,dev,test}.jsonl`` and accepts three
SHA-256 checksums. The zip users download today (phase 2) holds ``train.jsonl``,
``dev_seen.jsonl``, ``dev_unseen.jsonl``, ``test_seen.jsonl`` and
``test_unseen.jsonl``, so rc10 stops with ``AssertionError: dev.jsonl doesn't exist``
(or earlier, at the checksum).

Here the converter also accepts phase 2's checksum (upstream MMF's fourth), takes
whichever complete file list the zip holds (phase 2 first, else phase 1) and moves
exactly those files to ``annotations/``; a zip with neither list gets an error naming
both lists and what the zip held, a checksum mismatch names the file's SHA-256 and
``--bypass_checksum=1``. The rest is rc10's: the zip is moved into ``images/`` and
unpacked with ``unzip -P <password>`` (Python's zipfile when ``unzip`` is missing).
"""

import os
import sys

PHASE_TWO_CHECKSUM = "c1363aae9649c79ae4abfdb151b56d3d170187db77757f3daa80856558ac367c"
PHASE_ONE_FILES = ("train.jsonl", "dev.jsonl", "test.jsonl")
PHASE_TWO_FILES = ("train.jsonl", "dev_seen.jsonl", "dev_unseen.jsonl", "test_seen.jsonl", "test_unseen.jsonl")


def annotation_files(data_folder: str) -> tuple:
    """The zip's annotation list (phase 2 preferred); an error naming both lists otherwise."""
    present = sorted(os.listdir(data_folder)) if os.path.isdir(data_folder) else []
    for files in (PHASE_TWO_FILES, PHASE_ONE_FILES):
        if all(name in present for name in files):
            return files
    raise FileNotFoundError(
        f"The Hateful Memes zip unpacked into {data_folder} holds neither the phase-2 annotations "
        f"({', '.join(PHASE_TWO_FILES)}) nor the phase-1 ones ({', '.join(PHASE_ONE_FILES)}); "
        f"it holds: {', '.join(present) or 'nothing'}. Is this the challenge's zip?"
    )


def patch(converter_class) -> None:
    original_assert_files = converter_class.assert_files
    if getattr(original_assert_files, "__wrapped__", None):
        return
    original_checksum = converter_class.checksum

    def assert_files(self, folder):
        # rc10's convert() moves self.JSONL_FILES to annotations/ after this check
        self.JSONL_FILES = list(annotation_files(os.path.join(folder, "data")))
        print(f"Annotation files: {', '.join(self.JSONL_FILES)}")
        return original_assert_files(self, folder)

    def checksum(self, file, hashes):
        try:
            return original_checksum(self, file, hashes)
        except AssertionError:
            from mmf_refnet.compat.zoo_download import sha256

            raise AssertionError(
                f"{file} has SHA-256 {sha256(file)}, which is none of the Hateful Memes zips' known checksums "
                f"({', '.join(hashes)}). Download the zip again, or pass --bypass_checksum=1 to convert it anyway."
            ) from None

    assert_files.__wrapped__ = original_assert_files
    converter_class.assert_files = assert_files
    converter_class.checksum = checksum
    converter_class.POSSIBLE_CHECKSUMS = [*converter_class.POSSIBLE_CHECKSUMS, PHASE_TWO_CHECKSUM]


def apply() -> None:
    module = sys.modules.get("mmf_cli.hm_convert")
    if module is None or hasattr(module, "HMConverter"):
        from mmf_cli.hm_convert import HMConverter

        patch(HMConverter)
        return
    # mmf_convert_hm imports MMF (which applies the shims) before it defines HMConverter:
    # patch the class when the converter builds its Configuration, before it converts.
    from mmf.utils.configuration import Configuration

    original_init = Configuration.__init__

    def __init__(self, *args, **kwargs):
        Configuration.__init__ = original_init
        patch(module.HMConverter)
        original_init(self, *args, **kwargs)

    Configuration.__init__ = __init__
