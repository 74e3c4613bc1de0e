"""rc10's download machinery (``mmf/utils/download.py``), which fetches MMF's dataset
zoo (dataset builders) and model zoo (``checkpoint.resume_zoo``), cannot be pointed
at a mirror and can leave broken data behind:

* ``mmf://`` always expands to https://dl.fbaipublicfiles.com/mmf/data/
  (``DownloadableFile.MMF_PREFIX_REPLACEMENT``): machines behind a proxy have no way in.
* ``download()`` renames ``<file>.part`` to the final name *before* the checksum, so a
  corrupt file sits under its final name; a download that succeeds on the last retry is
  never renamed at all (``if download and retry > 0``).
* ``decompress()`` unpacks in place: an archive that breaks midway leaves half its
  files among the good ones.
* An archive that is already there (placed by hand, or left by an interrupted run) is
  not extracted (``download()`` returns False), yet ``.built.json`` is written: the
  dataset counts as built with nothing in it.
* Offline, or on a bad download, the user gets a bare ``requests`` ConnectionError or
  "Checksum ... does not match ... Please try again": no expected SHA-256, no target
  path, no way to place the file by hand.

Here ``mmf://`` expands to ``env.zoo_mirror`` (``$MMF_ZOO_MIRROR``; MMF's server by
default) and ``DownloadableFile.download_file`` downloads into ``<file>.part``
(resumed where the server allows), checks the SHA-256, then renames; an archive is
extracted into a temporary folder beside it and moved into place only when complete;
every failure raises :class:`ZooDownloadError` naming the URL, the expected SHA-256,
the target path and how to place the file by hand. rc10 keeps the rest: the zoo
files, the progress bar (tqdm), ``.built.json`` version markers, Google Drive links.
"""

import glob
import hashlib
import os
import shutil
import tempfile
import time

DEFAULT_MIRROR = "https://dl.fbaipublicfiles.com/mmf/data/"
MIRROR_ENV = "MMF_ZOO_MIRROR"
ATTEMPTS = 3  # a dropped connection is retried (resuming the .part file) after 1 s, then 2 s
TIMEOUT = (10, 60)  # seconds to connect, seconds between bytes
CHUNK = 1 << 16


class ZooDownloadError(RuntimeError):
    """A zoo file could not be downloaded, verified or extracted."""


def mirror() -> str:
    """The base URL that replaces ``mmf://``: env.zoo_mirror, else $MMF_ZOO_MIRROR, else MMF's server."""
    from mmf.common.registry import registry
    from omegaconf import OmegaConf

    config = registry.get("config", no_warning=True)
    url = OmegaConf.select(config, "env.zoo_mirror") if config is not None else None
    url = url or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    return url if url.endswith("/") else url + "/"


def expand(url: str) -> str:
    prefix = "mmf://"
    return mirror() + url[len(prefix):] if url.startswith(prefix) else url


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def failure(url: str, hashcode, target: str, reason: str) -> ZooDownloadError:
    return ZooDownloadError(
        f"{reason}\n"
        f"  URL:              {url}\n"
        f"  expected SHA-256: {hashcode or '(none listed in the zoo)'}\n"
        f"  target path:      {target}\n"
        "To place the file by hand: download the URL where you have access (e.g. `curl -L -o "
        f"{os.path.basename(target)} <URL>`), check it with `sha256sum`, and copy it to the target path; "
        "the next run verifies and extracts it. Behind a proxy, set env.zoo_mirror=<base URL> "
        f"(or ${MIRROR_ENV}) to a mirror of {DEFAULT_MIRROR}"
    )


def _stream(url: str, partial: str) -> None:
    """GET ``url`` into ``partial``, appending when the server resumes a partial file."""
    import requests
    import tqdm

    offset = os.path.getsize(partial) if os.path.isfile(partial) else 0
    headers = {"Range": f"bytes={offset}-", "Accept-Encoding": "identity"} if offset else {}
    with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as response:
        if response.status_code == 416:  # the partial file is already whole: the checksum decides
            return
        response.raise_for_status()
        if response.status_code != 206:
            offset = 0
        length = int(response.headers.get("Content-Length", 0) or 0)
        total = offset + length if length else None
        name = os.path.basename(partial)[: -len(".part")]
        with open(partial, "ab" if offset else "wb") as handle, tqdm.tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=f"Downloading {name}"
        ) as bar:
            for chunk in response.iter_content(CHUNK):
                handle.write(chunk)
                bar.update(len(chunk))
    if total is not None and os.path.getsize(partial) < total:
        raise ConnectionError(f"the connection closed after {os.path.getsize(partial)} of {total} bytes")


def _permanent(error) -> bool:
    response = getattr(error, "response", None)
    return response is not None and 400 <= response.status_code < 500


def fetch(url: str, target: str, hashcode) -> None:
    """Download ``url`` to ``target`` through ``target.part``; renamed only once whole and verified."""
    import requests

    partial = target + ".part"
    print(f"[ Downloading: {url} to {target} ]")
    for attempt in range(ATTEMPTS):
        try:
            _stream(url, partial)
            break
        except (requests.exceptions.RequestException, ConnectionError) as error:
            if _permanent(error) or attempt + 1 == ATTEMPTS:
                tries = "" if _permanent(error) else f" ({ATTEMPTS} attempts)"
                raise failure(url, hashcode, target, f"Download failed{tries}: {error}") from error
            print(f"[ Connection problem ({error}); retrying ]")
            time.sleep(2**attempt)
    digest = sha256(partial)
    if hashcode and digest != hashcode:
        os.remove(partial)
        raise failure(url, hashcode, target, f"The downloaded file is corrupt: its SHA-256 is {digest}")
    os.replace(partial, target)


def _move_into(source: str, destination: str) -> None:
    """Move the tree ``source`` onto ``destination``: directories merge, files replace."""
    if os.path.isdir(source) and os.path.isdir(destination) and not os.path.islink(destination):
        for entry in os.listdir(source):
            _move_into(os.path.join(source, entry), os.path.join(destination, entry))
        os.rmdir(source)
        return
    if os.path.isdir(destination) and not os.path.islink(destination):
        shutil.rmtree(destination)
    os.replace(source, destination)


def _unpack(archive: str, folder: str) -> None:
    try:
        shutil.unpack_archive(archive, folder, filter="data")  # no paths outside folder
    except TypeError:  # Python without extraction filters
        shutil.unpack_archive(archive, folder)


def extract(archive: str, folder: str, url: str, hashcode) -> None:
    """Unpack ``archive`` into a temporary folder beside it, then move its entries into ``folder``."""
    stem = f".{os.path.basename(archive)}.extracting-"
    for stale in glob.glob(os.path.join(folder, stem + "*")):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=stem, dir=folder)
    print(f"[ Extracting {archive} ]")
    try:
        _unpack(archive, staging)
    except Exception as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise failure(url, hashcode, archive, f"Cannot extract {archive}: {error}") from error
    for entry in os.listdir(staging):
        _move_into(os.path.join(staging, entry), os.path.join(folder, entry))
    os.rmdir(staging)


def download_file(self, download_path):
    """Replacement for rc10's ``DownloadableFile.download_file`` (same arguments)."""
    if self._dest_folder is not None:
        download_path = os.path.join(download_path, self._dest_folder)
    os.makedirs(download_path, exist_ok=True)
    target = os.path.join(download_path, self._file_name)
    hashcode = None if self._hashcode is None else str(self._hashcode)  # YAML reads an all-digit one as a number
    whole = os.path.isfile(target) and (not hashcode or sha256(target) == hashcode)
    if not whole:
        if os.path.isfile(target):
            print(f"[ {target} does not match its SHA-256 {hashcode}: downloading it again ]")
        fetch(self._url, target, hashcode)
    if self._compressed:
        extract(target, download_path, self._url, hashcode)
        if self._delete_original:
            os.remove(target)


def apply() -> None:
    from mmf.utils.download import DownloadableFile

    original_download_file = DownloadableFile.download_file
    if getattr(original_download_file, "__wrapped__", None):
        return

    def download_file_unless_google(self, download_path):
        if self._from_google:  # a Drive id, not a URL: rc10's own code
            return original_download_file(self, download_path)
        return download_file(self, download_path)

    download_file_unless_google.__wrapped__ = original_download_file
    DownloadableFile.download_file = download_file_unless_google
    DownloadableFile._parse_url = lambda self, url: expand(url)
