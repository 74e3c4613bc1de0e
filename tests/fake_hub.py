"""A local stand-in for the Hugging Face hub's file endpoint (``HF_ENDPOINT``), started by a test.

Serves ``HEAD``/``GET /<repo>/resolve/<revision>/<file>`` for the repositories given, with the
headers huggingface_hub reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``) and its error
codes (``RepoNotFound``, ``EntryNotFound``). Counts the file downloads (GETs).
"""

import contextlib
import os
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests import hf_cache


def _handler(repos: dict, commit: str, downloads: Counter):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, with_body: bool):
            repo, found, rest = self.path.split("?")[0].lstrip("/").partition("/resolve/")
            filename = rest.partition("/")[2]  # after the revision
            if not found or repo not in repos:
                return self._error(404, "RepoNotFound", f"Repository {repo} not found")
            path = os.path.join(repos[repo], filename)
            if not os.path.isfile(path):
                return self._error(404, "EntryNotFound", f"{filename} does not exist")
            with open(path, "rb") as handle:
                data = handle.read()
            self.send_response(200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{hf_cache.blob_id(filename, data)}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                downloads[f"{repo}/{filename}"] += 1
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str):
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self):
            self._answer(with_body=False)

        def do_GET(self):
            self._answer(with_body=True)

    return Handler


@contextlib.contextmanager
def serve(repos: dict, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """``with serve({"bert-base-uncased": folder}) as (endpoint, downloads):`` a running hub on 127.0.0.1."""
    downloads = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repos, commit, downloads))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", downloads
    finally:
        server.shutdown()
        server.server_close()
