"""Test programs (``python -c CODE`` or ``python SCRIPT ARGS``) as forked children of a server that
has already imported the heavy third-party libraries (torch, transformers, scikit-learn, SciPy):
a new interpreter spends about 4 s on them, a fork of the server none.

The server never imports ``mmf`` or ``mmf_refnet``: each child does, with its own environment set
first, so the autoload hook, the shims and ``MMF_REFNET_SKIP_SHIMS`` act in the child as in a new
interpreter (a program that imports torch and transformers before MMF, as any notebook may). A
child is a real process (its own pid, ``kill -9`` kills it, atexit handlers run on a normal exit).
What a fork cannot give: environment variables that the preloaded libraries read at import time
(``HF_HOME``, ``HF_HUB_*``, ``OMP_NUM_THREADS``) are the test process's; tests that vary those run
``sys.executable`` themselves. The console scripts users run (``mmf_run``, ``torchrun``, the
README's lines) are never run here.

    run(argv, env, cwd=None, timeout=600) -> subprocess.CompletedProcess
    start(argv, env, cwd=None) -> Child  (pid, wait(timeout), poll(), communicate(timeout), kill(),
                                          stdout, stderr)
"""

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

PRELOADED = ("numpy", "torch", "torch.distributed", "scipy.stats", "sklearn.metrics", "transformers",
             "transformers.models.auto.tokenization_auto", "transformers.models.bert.modeling_bert",
             "omegaconf", "yaml", "lmdb", "PIL.Image", "pytorch_metric_learning.losses", "requests", "tqdm")


# --- the server (this file run as a script) ----------------------------------------------------

def _child(request: dict, out: int, err: int) -> None:
    """Become the requested program: environment, cwd, streams, argv, then run it; never returns."""
    import atexit as child_atexit
    import io
    import runpy
    import traceback

    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdin = open(0, closefd=False)
        sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), line_buffering=True)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        import _mmf_refnet_autoload  # what the installed .pth does at a new interpreter's start

        _mmf_refnet_autoload.install()
        paths = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        argv = request["argv"]
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[:0] = ["", *paths]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        else:
            sys.argv = list(argv)
            sys.path[:0] = [os.path.dirname(os.path.abspath(argv[0])), *paths]
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as exit_request:
        status = exit_request.code
        if status is None or isinstance(status, int):
            code = status or 0
        else:
            print(status, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    try:
        child_atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve() -> None:
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    replies = sys.stdout
    print(json.dumps({"ready": True}), file=replies, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        replies.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, out, err)
        os.close(out)
        os.close(err)
        print(json.dumps({"pid": pid}), file=replies, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), file=replies, flush=True)


# --- the test side -----------------------------------------------------------------------------

class _Server:
    def __init__(self):
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
        env["MMF_REFNET_AUTOLOAD"] = "0"  # the server itself never imports mmf; each child installs the hook
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self._pending = b""  # read straight from the pipe's descriptor: select() cannot see a reader's buffer
        assert self._reply(None) == {"ready": True}

    def _reply(self, timeout: Optional[float]) -> Optional[dict]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.process.stdout.fileno()], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the fork server (pid {self.process.pid}) exited with {self.process.wait()}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


_IDLE: List[_Server] = []  # servers whose last child has ended
_ALL: List[_Server] = []


@atexit.register
def _close_all() -> None:
    for server in _ALL:
        server.close()


class Child:
    """A running program, as much of ``subprocess.Popen`` as the tests use."""

    def __init__(self, server: _Server, argv: list, env: dict, cwd: Optional[str]):
        self.server, self.args, self.returncode = server, argv, None
        folder = tempfile.mkdtemp(prefix="forked-")
        self._out, self._err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        request = {"argv": list(argv), "env": {k: str(v) for k, v in env.items()}, "cwd": cwd or os.getcwd(),
                   "stdout": self._out, "stderr": self._err}
        server.process.stdin.write(json.dumps(request) + "\n")
        server.process.stdin.flush()
        self.pid = server._reply(None)["pid"]

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            reply = self.server._reply(0)
            if reply is not None:
                self._finish(reply["returncode"])
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is None:
            reply = self.server._reply(timeout)
            if reply is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._finish(reply["returncode"])
        return self.returncode

    def communicate(self, timeout: Optional[float] = None):
        self.wait(timeout)
        return self.stdout, self.stderr

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass

    def _finish(self, returncode: int) -> None:
        self.returncode = returncode
        _IDLE.append(self.server)

    def _read(self, path: str) -> str:
        with open(path, errors="replace") as handle:
            return handle.read()

    @property
    def stdout(self) -> str:
        return self._read(self._out)

    @property
    def stderr(self) -> str:
        return self._read(self._err)


def start(argv: list, env: dict, cwd: Optional[str] = None) -> Child:
    """``argv`` as ``[sys.executable, *argv]`` would run it (``["-c", code, ...]`` or ``[script, ...]``)."""
    while _IDLE and _IDLE[-1].process.poll() is not None:
        _IDLE.pop()
    if _IDLE:
        server = _IDLE.pop()
    else:
        server = _Server()
        _ALL.append(server)
    return Child(server, argv, env, cwd)


def run(argv: list, env: dict, cwd: Optional[str] = None, timeout: float = 600) -> subprocess.CompletedProcess:
    child = start(argv, env, cwd)
    deadline = time.monotonic() + timeout
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(max(1.0, deadline - time.monotonic() + 30))
        raise
    return subprocess.CompletedProcess([sys.executable, *argv], child.returncode, child.stdout, child.stderr)


if __name__ == "__main__":
    serve()
