"""rc10's ``AnnotationDatabase._load_jsonl`` calls ``json.loads`` on every line
without context, so one malformed line gives a bare ``JSONDecodeError`` and a
blank line crashes too. Lines are parsed with the file name and line number in
the error; blank lines are skipped."""

import json


class AnnotationFormatError(ValueError):
    pass


def read_jsonl(path: str) -> list:
    rows = []
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
    return rows


def apply() -> None:
    from mmf.datasets.databases.annotation_database import AnnotationDatabase

    def _load_jsonl(self, path):
        self.data = read_jsonl(path)
        self.start_idx = 0

    AnnotationDatabase._load_jsonl = _load_jsonl
