"""rc10's ``Checkpoint._torch_load`` passes torch.load's failure on a damaged
file straight through, naming no file: a truncated checkpoint gives
"PytorchStreamReader failed reading zip archive", an empty one a bare
``EOFError``, random bytes torch's advice to retry with ``weights_only=False``
(which runs whatever code the file carries). Now the error names the file, says
what is wrong with it (empty, truncated, not a checkpoint) and what to do
(``mmf_refnet.checkpoint_files.read_checkpoint``)."""

import os

import torch

from mmf_refnet.checkpoint_files import unreadable

# failures that are not about the file's bytes (torch.load raises anything from EOFError to IndexError on those)
NOT_THE_BYTES = (torch.OutOfMemoryError, FileNotFoundError, PermissionError, IsADirectoryError, KeyboardInterrupt)


def apply() -> None:
    from mmf.utils.checkpoint import Checkpoint

    original = Checkpoint._torch_load
    if hasattr(original, "__wrapped__"):
        return

    def _torch_load(self, file):
        try:
            return original(self, file)
        except NOT_THE_BYTES:
            raise
        except Exception as error:
            if not isinstance(file, str) or not os.path.isfile(file):
                raise
            raise unreadable(file, error) from None

    _torch_load.__wrapped__ = original
    Checkpoint._torch_load = _torch_load
