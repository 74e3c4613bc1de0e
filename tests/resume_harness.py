"""``mmf_run`` with test hooks, for the resume tests (tests/test_resume.py).

``python tests/resume_harness.py config=... env.save_dir=...`` runs MMF's own
``mmf_cli.run.run()`` on this repository's plugin. Environment variables:

``REFNET_EVENTS=<file>``
    Append one JSON line per training loss (``{"update": n, "loss": x}``, the
    full float) and per file written through ``checkpoint_files.atomic_write``
    (``{"write": basename, "update": n}``).
``REFNET_KILL_AFTER_UPDATE=<n>``
    SIGKILL this process right after update ``n`` (its logging, checkpoints and
    evaluation done).
``REFNET_KILL_IN_WRITE=<name>[@<n>]``
    SIGKILL in the middle of writing the file whose path ends with ``name``
    (at update ``n``, else the first time): half of its bytes reach the
    temporary file, as when a process dies mid-write.
``REFNET_PAUSE_AFTER_UPDATE=<n>:<folder>``
    After update ``n`` create ``<folder>/paused`` and wait until ``<folder>/go``
    exists (two concurrent runs).
"""

import io
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmf_refnet import checkpoint_files  # noqa: E402  (first: applies the shims before MMF loads)
from mmf_refnet.trainer import RefNetTrainer  # noqa: E402


def current_update() -> int:
    from mmf.common.registry import registry

    return int(registry.get("num_updates", no_warning=True) or 0)


def record(event: dict) -> None:
    path = os.environ.get("REFNET_EVENTS")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(event) + "\n")


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def saved_name(path: str) -> str:
    """``models/model_6.ckpt``, ``current.ckpt``, ...: the path below the save_dir."""
    folder, name = os.path.split(path)
    return f"models/{name}" if os.path.basename(folder) == "models" else name


def kill_target():
    setting = os.environ.get("REFNET_KILL_IN_WRITE")
    if not setting:
        return None, None
    name, _, update = setting.partition("@")
    return name, int(update) if update else None


def hook_writes() -> None:
    original = checkpoint_files.atomic_write
    name, update = kill_target()

    def atomic_write(path, write):
        record({"write": saved_name(path), "update": current_update()})
        if name and path.endswith(name) and (update is None or update == current_update()):
            buffer = io.BytesIO()
            write(buffer)
            data = buffer.getvalue()
            with open(checkpoint_files.temporary_path(path), "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            die()
        return original(path, write)

    checkpoint_files.atomic_write = atomic_write


def hook_training() -> None:
    extract, logistics = RefNetTrainer._extract_loss, RefNetTrainer._logistics
    kill_after = int(os.environ.get("REFNET_KILL_AFTER_UPDATE", "-1"))
    pause = os.environ.get("REFNET_PAUSE_AFTER_UPDATE")
    pause_update, _, pause_folder = (pause or "-1:").partition(":")

    def _extract_loss(self, report):
        loss = extract(self, report)
        if self.model.training:
            record({"update": self.num_updates + 1, "loss": loss.item()})
        return loss

    def _logistics(self, report):
        result = logistics(self, report)
        if self.stepped and self.num_updates == kill_after:
            die()
        if self.stepped and self.num_updates == int(pause_update):
            open(os.path.join(pause_folder, "paused"), "w").close()
            while not os.path.exists(os.path.join(pause_folder, "go")):
                time.sleep(0.1)
        return result

    RefNetTrainer._extract_loss = _extract_loss
    RefNetTrainer._logistics = _logistics


if __name__ == "__main__":
    hook_writes()
    hook_training()
    from mmf_cli.run import run

    run()
