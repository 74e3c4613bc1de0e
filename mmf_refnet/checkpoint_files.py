"""Checkpoint files that survive a crash, and errors that say which file is damaged.

* ``atomic_write``: every file goes to a temporary file in the same folder, is
  flushed and fsync'ed, then renamed over the target (and the folder fsync'ed).
  A process killed at any moment leaves the old file or the new one, never half
  of one; the leftover temporary (``.<name>.tmp-<host>-<pid>``) is removed by the
  next run (``remove_stale_temporaries``).
* ``read_checkpoint``: ``torch.load`` (``weights_only``, the safe default) whose
  failures name the file, what is wrong with it (empty, truncated, not a
  checkpoint) and what to do, instead of torch's bare ``EOFError`` / zip errors
  or its advice to retry with ``weights_only=False`` (which would run any code
  the file carries).
* ``is_intact``: a cheap check (zip central directory, no tensor data read) used
  to pick a checkpoint before loading it.
"""

import errno
import io
import os
import shutil
import socket
import warnings
import zipfile
from typing import IO, Callable, Optional

import torch

TEMPORARY_MARK = ".tmp-"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_BYTE = b"\x80"  # torch's legacy (pre-1.6, non-zip) format starts with a pickle


class CheckpointFileError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message names it and says what to do."""


def temporary_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}{TEMPORARY_MARK}{socket.gethostname()}-{os.getpid()}")


def fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """``write(handle)`` into a temporary file next to ``path``, fsync, rename over ``path``."""
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    fsync_folder(os.path.dirname(os.path.abspath(path)))


def save_checkpoint(obj, path: str) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))


def copy_file(source: str, path: str) -> None:
    """An atomic copy of ``source`` (already complete) to ``path``."""

    def write(handle):
        with open(source, "rb") as original:
            if not _copied_in_the_kernel(original, handle):
                shutil.copyfileobj(original, handle, 16 << 20)

    atomic_write(path, write)


def _copied_in_the_kernel(source: IO[bytes], target: IO[bytes]) -> bool:
    """``copy_file_range`` from file to file (no trip through Python's buffers: a checkpoint's
    copies took longer than its serialisation); False where the handle is not a file or the
    filesystem cannot, with nothing written."""
    try:
        source_fd, target_fd = source.fileno(), target.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False
    remaining = os.fstat(source_fd).st_size
    try:
        while remaining > 0:
            copied = os.copy_file_range(source_fd, target_fd, remaining)
            if copied == 0:
                break
            remaining -= copied
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
            raise
        os.ftruncate(target_fd, 0)
        os.lseek(target_fd, 0, os.SEEK_SET)
        source.seek(0)
        return False
    return remaining == 0


def write_text(path: str, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str) -> list:
    """Delete temporaries that a killed process of this host left in ``folder``; returns their paths."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    prefix = f"{TEMPORARY_MARK}{socket.gethostname()}-"
    for name in os.listdir(folder):
        if not name.startswith(".") or prefix not in name:
            continue
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_is_running(int(pid)):
            path = os.path.join(folder, name)
            os.remove(path)
            removed.append(path)
    return removed


def is_intact(path: str) -> bool:
    """True when ``path`` is a complete torch checkpoint as far as its zip directory shows.

    A truncated zip loses its central directory (at the end of the file), so
    this catches interrupted writes without reading tensor data. Legacy
    (non-zip) checkpoints cannot be checked cheaply and count as intact.
    """
    try:
        if os.path.getsize(path) == 0:
            return False
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head.startswith(PICKLE_PROTOCOL_BYTE):
            return True
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


ADVICE = (
    "Use another checkpoint: with checkpoint.resume=True a run continues from the newest intact checkpoint in "
    "its env.save_dir (current.ckpt, else models/model_<update>.ckpt); otherwise point checkpoint.resume_file at "
    "an intact file. Do not switch torch.load's safe loading off to read a file you cannot vouch for."
)


def diagnose(path: str, error: Optional[BaseException] = None) -> str:
    """What is wrong with checkpoint ``path``, in words (no torch advice copied)."""
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes): it was created but never written, e.g. the run was killed while saving"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == ZIP_MAGIC and not zipfile.is_zipfile(path):
        return (f"is truncated ({size} bytes, the end of its zip archive is missing): its write was interrupted, "
                "e.g. the run was killed or the disk filled up while saving")
    if head != ZIP_MAGIC and not head.startswith(PICKLE_PROTOCOL_BYTE):
        return f"is not a PyTorch checkpoint ({size} bytes starting with {head!r}; a checkpoint is a zip archive)"
    message = str(error or "")
    if "Unsupported global" in message or "weights_only" in message.lower() and "global" in message.lower():
        globals_line = next((line.strip() for line in message.splitlines() if "GLOBAL" in line), "")
        return ("holds Python objects that safe loading refuses to unpickle"
                + (f" ({globals_line})" if globals_line else "")
                + ". If you trust the file, allow exactly those classes with torch.serialization.add_safe_globals")
    first_line = next((line.strip() for line in message.splitlines()
                       if line.strip() and "weights_only" not in line), type(error).__name__ if error else "")
    return f"is damaged ({size} bytes; torch.load: {type(error).__name__ if error else 'error'}: {first_line})"


def read_checkpoint(path: str, map_location=None):
    """``torch.load(path)`` whose errors name the file and the way out."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ValueError, ...
        raise unreadable(path, error) from None


def unreadable(path: str, error: Optional[BaseException] = None) -> CheckpointFileError:
    """The error for checkpoint ``path`` that ``torch.load`` could not read."""
    return CheckpointFileError(f"checkpoint file {path} {diagnose(path, error)}. {ADVICE}")


def update_of(path: str) -> Optional[int]:
    """``models/model_<update>.ckpt`` → update; None for other names."""
    name = os.path.basename(path)
    if name.startswith("model_") and name.endswith(".ckpt") and name[6:-5].isdigit():
        return int(name[6:-5])
    return None


def read_metadata(path: str) -> dict:
    """A checkpoint's counters (num_updates, best_update, ...) without reading its tensors (mmap)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {key: value for key, value in state.items() if isinstance(value, (int, float, str)) or value is None}


class CheckpointWarning(UserWarning):
    """A checkpoint problem that the run worked around (a fallback, a repair)."""


def warn(message: str) -> None:
    """A ``CheckpointWarning`` (MMF's logger copies warnings into train.log)."""
    warnings.warn(message, CheckpointWarning, stacklevel=3)
