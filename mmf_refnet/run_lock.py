"""One run per ``env.save_dir``: an exclusive lock held for the run's lifetime.

The lock is a POSIX record lock (``lockf``) on ``<save_dir>/.run.lock``: the
kernel releases it when the holder exits in any way (including ``kill -9``), a
forked DataLoader worker does not inherit it (so it cannot outlive its run), and
NFS supports it. The holder writes its pid, host, start time and command into
the file and empties it on a clean exit: a second run is refused with those
details, and a run that finds the file unlocked but not empty takes over the
stale lock of a dead process, with a warning naming it. Where the filesystem
has no locks the run goes on with a warning (a second run is then not
detected). A process takes each save_dir's lock once (``_HELD``): closing a
second descriptor of the file would drop a POSIX lock.
"""

import atexit
import datetime
import errno
import json
import os
import shlex
import socket
import sys
import warnings
from typing import Optional

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

LOCK_NAME = ".run.lock"
BUSY = (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK)
_HELD: dict = {}  # lock path -> SaveDirLock held by this process


class SaveDirLocked(RuntimeError):
    """Another live process holds the save_dir's lock."""


def describe(owner: Optional[dict]) -> str:
    if not owner:
        return "a process that has not written its details yet"
    return (f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}, "
            f"command: {owner.get('command')}")


def this_process() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv),
    }


def _read(descriptor: int) -> Optional[dict]:
    os.lseek(descriptor, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(descriptor, 65536):
        raw += chunk
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"pid": "?", "host": "?", "started": "?", "command": raw.decode("utf-8", "replace")[:200]}


class SaveDirLock:
    def __init__(self, save_dir: str):
        self.save_dir = os.path.abspath(save_dir)
        self.path = os.path.join(self.save_dir, LOCK_NAME)
        self.descriptor: Optional[int] = None

    @property
    def held(self) -> bool:
        return self.descriptor is not None

    def acquire(self) -> Optional[dict]:
        """Take the lock or raise ``SaveDirLocked``; returns the stale owner taken over, if any."""
        if fcntl is None or self.held or self.path in _HELD:
            return None
        os.makedirs(self.save_dir, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            owner = _read(descriptor) if error.errno in BUSY else None
            os.close(descriptor)
            if error.errno not in BUSY:
                warnings.warn(f"cannot lock env.save_dir {self.save_dir} ({error}): a second run on it would not be "
                              "detected", stacklevel=2)
                return None
            raise SaveDirLocked(
                f"env.save_dir {self.save_dir} is in use by another run: {describe(owner)}. Two runs in one "
                "save_dir overwrite each other's checkpoints and logs. Wait for that run to end (or stop it), or "
                f"give this run another env.save_dir. (Lock file: {self.path})") from None
        stale = _read(descriptor)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(this_process()).encode(), 0)
        os.fsync(descriptor)
        self.descriptor = descriptor
        _HELD[self.path] = self
        atexit.register(self.release)
        if stale:
            warnings.warn(f"took over the lock of env.save_dir {self.save_dir} from {describe(stale)}: that run "
                          "ended without releasing it (killed or crashed)", stacklevel=2)
        return stale

    def release(self) -> None:
        if self.descriptor is None:
            return
        descriptor, self.descriptor = self.descriptor, None
        _HELD.pop(self.path, None)
        try:
            os.ftruncate(descriptor, 0)
            fcntl.lockf(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)
