"""rc10's ``AnnotationDatabase._load_jsonl`` calls ``json.loads`` on every line
without context, so one malformed line gives a bare ``JSONDecodeError`` and a
blank line crashes too. Lines are parsed with the file name and line number in
the error; blank lines are skipped. The database keeps its ``path`` and each
row's ``line_numbers`` so that later checks (``mmf_refnet.data.row_checks``)
can name the file and line of a bad row."""

from mmf_refnet.data.jsonl_rows import read_jsonl_with_lines


def apply() -> None:
    from mmf.datasets.databases.annotation_database import AnnotationDatabase

    def _load_jsonl(self, path):
        self.data, self.line_numbers = read_jsonl_with_lines(path)
        self.path = path
        self.start_idx = 0

    AnnotationDatabase._load_jsonl = _load_jsonl
