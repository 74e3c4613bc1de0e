"""rc10's ``AnnotationDatabase._load_jsonl`` calls ``json.loads`` on every line
without context, so one malformed line gives a bare ``JSONDecodeError`` and a
blank line crashes too. Lines are parsed with the file name and line number in
the error; blank lines are skipped. The database keeps its ``path`` and each
row's ``line_numbers`` so that later checks (``mmf_refnet.data.row_checks``)
can name the file and line of a bad row."""

import json
from typing import List, Tuple


class AnnotationFormatError(ValueError):
    pass


def read_jsonl_with_lines(path: str) -> Tuple[List[dict], List[int]]:
    """The rows of a jsonl file and the 1-based line number of each."""
    rows, numbers = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                excerpt = line.strip()[:120]
                raise AnnotationFormatError(f"{path}, line {number}: not valid JSON ({error.msg}): {excerpt!r}") from None
            if not isinstance(row, dict):
                raise AnnotationFormatError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
            numbers.append(number)
    return rows, numbers


def read_jsonl(path: str) -> list:
    return read_jsonl_with_lines(path)[0]


def apply() -> None:
    from mmf.datasets.databases.annotation_database import AnnotationDatabase

    def _load_jsonl(self, path):
        self.data, self.line_numbers = read_jsonl_with_lines(path)
        self.path = path
        self.start_idx = 0

    AnnotationDatabase._load_jsonl = _load_jsonl
