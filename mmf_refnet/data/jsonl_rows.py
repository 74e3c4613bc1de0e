"""Reading jsonl annotation files with each row's line number, for errors that name file and line."""

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
