"""A real HTTP server (``http.server`` in a thread of the test process) that serves
files as MMF's zoo does, counts the requests per path and can cut a response short;
and zoo files that point MMF at it with the hashcodes of locally built tarballs."""

import collections
import functools
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from tests import runner

REAL_ZOOS = os.path.join(runner.REPO, "mmf_refnet", "mmf_root", "configs", "zoo")


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args, zoo, **kwargs):
        self.zoo = zoo
        super().__init__(*args, **kwargs)

    def do_GET(self):
        path = self.path.split("?")[0].lstrip("/")
        with self.zoo.lock:
            self.zoo.requests[path] += 1
        if path in self.zoo.truncated:
            return self._send_half(os.path.join(self.zoo.root, path))
        return super().do_GET()

    def _send_half(self, file):
        """Announce the whole file, send half of it, close the connection (a dropped download)."""
        with open(file, "rb") as handle:
            data = handle.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class ZooServer:
    def __init__(self, root: str):
        self.root = root
        self.requests = collections.Counter()
        self.truncated = set()
        self.lock = threading.Lock()
        handler = functools.partial(_Handler, zoo=self, directory=root)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def zoo_with_hashes(kind: str, hashes: dict, path: str) -> str:
    """A copy of our real zoo file (``datasets`` or ``models``) in which the hashcodes of the files
    whose ``mmf://`` paths are in ``hashes`` are replaced; everything else stays as written."""
    with open(os.path.join(REAL_ZOOS, f"{kind}.yaml")) as handle:
        text = handle.read()
    for url_path, digest in hashes.items():
        pattern = rf"(url: mmf://{re.escape(url_path)}\n(?:[ \t]+\w+: .*\n)*?[ \t]+hashcode: )[0-9a-f]{{64}}"
        text, count = re.subn(pattern, rf"\g<1>{digest}", text)
        assert count, f"{url_path} is not in the {kind} zoo"
    with open(path, "w") as handle:
        handle.write(text)
    return path
