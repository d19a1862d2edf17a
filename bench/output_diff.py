"""Two job outputs, file by file: which differ, and why.

A restructuring that changes no behaviour must leave a job's output byte for
byte as it was, except for what no two runs share: when it ran and how long it
took (``started_at``, ``finished_at``, ``wall_s``, a correction's
``applied_at``), the package's own version, and the folder it was written to.
So every file must match in bytes, and only where they do not is a file looked
into:

- JSON (``_job.json``, ``_run.json``, ``_probe/*.json``, manifests): equal once
  those fields are blanked and the output folder is named ``<root>`` in every
  string; key order counts, whitespace does not;
- Parquet (``videos/*.parquet`` holds the times): written alike (row groups,
  compression, encodings), the same schema and rows once those columns are
  blanked and paths renamed, and only when something was blanked or renamed:
  a mask part whose bytes differ differs, even if it decodes to the same rows;
- everything else (memory states, videos, PNGs): bytes.

>>> import tempfile, pathlib
>>> a, b = (pathlib.Path(tempfile.mkdtemp()) for _ in range(2))
>>> for root, when in ((a, "10:00"), (b, "11:00")):
...     _ = (root / "_job.json").write_text(json.dumps({"n": 1, "finished_at": when}))
>>> result = compare_outputs(a, b)
>>> result.identical, result.files[0].status, result.files[0].why
(True, 'same', 'ignored: finished_at')
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Fields and columns that legitimately differ between two runs of the same job.
VOLATILE = frozenset({"started_at", "finished_at", "wall_s", "applied_at",
                      "sam_batch_version"})
#: What a path under the output folder reads as once normalised.
ROOT = "<root>"
_BLANK = "<ignored>"


@dataclass(frozen=True)
class FileResult:
    """One relative path: ``same`` (maybe after ignoring ``why``) or ``differs`` (``why``)."""

    path: str
    status: str
    why: str = ""


@dataclass
class Comparison:
    files: list[FileResult] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(f.status == "same" for f in self.files)

    @property
    def differing(self) -> list[FileResult]:
        return [f for f in self.files if f.status != "same"]

    def table(self, collapse: int = 4) -> str:
        """One row a file; a folder's ``collapse`` or more plainly equal files (frames
        as PNGs) as one row."""
        rows = _collapsed(self.files, collapse) if collapse else self.files
        width = max([len(f.path) for f in rows] + [4])
        lines = [f"{'file':<{width}}  {'status':<8} why"]
        lines += [f"{f.path:<{width}}  {f.status:<8} {f.why}".rstrip() for f in rows]
        return "\n".join(lines)


def _collapsed(files: list[FileResult], least: int) -> list[FileResult]:
    plain: dict[str, int] = {}
    for f in files:
        if f.status == "same" and not f.why:
            folder = f.path.rpartition("/")[0]
            plain[folder] = plain.get(folder, 0) + 1
    out, shown = [], set()
    for f in files:
        folder = f.path.rpartition("/")[0]
        if f.status == "same" and not f.why and plain[folder] >= least:
            if folder not in shown:
                shown.add(folder)
                out.append(FileResult(f"{folder}/ ({plain[folder]} files)", "same"))
        else:
            out.append(f)
    return out


def compare_outputs(before: str | os.PathLike, after: str | os.PathLike,
                    written_at: tuple[str, str] | None = None) -> Comparison:
    """Compare two output folders file by file.

    ``written_at``: where each side was written, when it has since moved (paths
    inside the files name that folder); by default each folder itself.
    """
    a, b = Path(before), Path(after)
    roots = written_at or (str(a), str(b))
    files_a, files_b = _files(a), _files(b)
    out = Comparison()
    for rel in sorted(files_a | files_b):
        if rel not in files_b:
            out.files.append(FileResult(rel, "differs", "only in before"))
        elif rel not in files_a:
            out.files.append(FileResult(rel, "differs", "only in after"))
        else:
            out.files.append(compare_file(rel, a / rel, b / rel, roots))
    return out


def compare_file(rel: str, a: Path, b: Path, roots: tuple[str, str]) -> FileResult:
    data_a, data_b = a.read_bytes(), b.read_bytes()
    if data_a == data_b:
        return FileResult(rel, "same")
    if rel.endswith((".json", ".jsonl")):
        return _compare_json(rel, data_a, data_b, roots)
    if rel.endswith(".parquet"):
        return _compare_parquet(rel, a, b, roots)
    return FileResult(rel, "differs", _bytes_why(data_a, data_b))


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _bytes_why(a: bytes, b: bytes) -> str:
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                 min(len(a), len(b)))
    return f"bytes differ from offset {first} ({len(a)} vs {len(b)} bytes)"


def _compare_json(rel: str, a: bytes, b: bytes, roots: tuple[str, str]) -> FileResult:
    try:
        docs_a = [json.loads(line) for line in _json_docs(rel, a)]
        docs_b = [json.loads(line) for line in _json_docs(rel, b)]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return FileResult(rel, "differs", f"bytes differ and one side is not JSON ({e})")
    if json.dumps(_blank(docs_a, roots[0])) != json.dumps(_blank(docs_b, roots[1])):
        if rel.endswith(".json"):  # one document, not lines
            docs_a, docs_b = docs_a[0], docs_b[0]
        return FileResult(rel, "differs", _json_why(docs_a, docs_b, roots))
    moved = _ignored_that_differ(docs_a, docs_b)
    return FileResult(rel, "same", "ignored: " + ", ".join(sorted(moved)) if moved
                      else "formatting or output path only")


def _json_docs(rel: str, data: bytes) -> list[str]:
    text = data.decode()
    return [line for line in text.splitlines() if line.strip()] if rel.endswith(".jsonl") \
        else [text]


def _blank(value, root: str):
    """``value`` with volatile fields blanked and the output folder renamed."""
    if isinstance(value, dict):
        return {k: _BLANK if k in VOLATILE else _blank(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, ROOT)
    return value


def _ignored_that_differ(a, b) -> set[str]:
    """Names of the volatile fields whose values differ between ``a`` and ``b``."""
    out: set[str] = set()
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a.keys() & b.keys():
            if k in VOLATILE and a[k] != b[k]:
                out.add(k)
            else:
                out |= _ignored_that_differ(a[k], b[k])
    elif isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b, strict=False):
            out |= _ignored_that_differ(x, y)
    return out


def _json_why(a, b, roots: tuple[str, str], where: str = "") -> str:
    """The first place where two normalised JSON values part."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"keys of {where or 'the top level'} differ: {_keys_diff(a, b)}"
        for k in a:
            if k not in VOLATILE and _blank(a[k], roots[0]) != _blank(b[k], roots[1]):
                return _json_why(a[k], b[k], roots, f"{where}.{k}" if where else k)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where or 'list'}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if _blank(x, roots[0]) != _blank(y, roots[1]):
                return _json_why(x, y, roots, f"{where}[{i}]")
    return f"{where or 'value'}: {_short(a)} vs {_short(b)}"


def _keys_diff(a: dict, b: dict) -> str:
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        return f"only before {only_a}, only after {only_b}"
    return "same keys, another order"


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _compare_parquet(rel: str, a: Path, b: Path, roots: tuple[str, str]) -> FileResult:
    try:
        ta, tb = pq.read_table(a), pq.read_table(b)
    except (OSError, pa.ArrowException) as e:
        return FileResult(rel, "differs", f"{_bytes_why(a.read_bytes(), b.read_bytes())}; "
                                          f"unreadable: {str(e).splitlines()[0][:60]}")
    if ta.schema != tb.schema or ta.schema.metadata != tb.schema.metadata:
        return FileResult(rel, "differs", "schemas differ")
    if _layout(a) != _layout(b):
        return FileResult(rel, "differs", "written otherwise (row groups, compression, "
                                          "encodings or writer)")
    if ta.num_rows != tb.num_rows:
        return FileResult(rel, "differs", f"{ta.num_rows} vs {tb.num_rows} rows")
    moved, paths = [], False
    for name in ta.column_names:
        col_a, col_b = ta.column(name), tb.column(name)
        if col_a.equals(col_b):
            continue
        if name in VOLATILE:
            moved.append(name)
        elif col_a.type == pa.string() and _renamed(col_a, roots[0]) == _renamed(col_b, roots[1]):
            paths = True
        else:
            return FileResult(rel, "differs", f"column {name} differs")
    if not moved and not paths:
        return FileResult(rel, "differs", "same rows, " + _bytes_why(a.read_bytes(),
                                                                    b.read_bytes()))
    return FileResult(rel, "same", "ignored: " + ", ".join(moved + ["output path"] * paths))


def _layout(path: Path) -> tuple:
    """How a Parquet file is written, apart from its values: a change there changes the
    bytes too, and would hide behind a blanked column otherwise."""
    meta = pq.ParquetFile(path).metadata
    groups = tuple(
        (rg.num_rows, tuple((c.path_in_schema, c.compression, c.encodings)
                            for c in map(rg.column, range(rg.num_columns))))
        for rg in map(meta.row_group, range(meta.num_row_groups)))
    return meta.created_by, meta.format_version, groups


def _renamed(column: pa.ChunkedArray, root: str) -> list:
    return [v.replace(root, ROOT) if v is not None else None for v in column.to_pylist()]


def summary(result: Comparison, jobs: Iterable[str] = ()) -> dict:
    """What ``RESULT`` holds: identical or not, files compared, those that differ."""
    return {"identical": result.identical, "files": len(result.files),
            "differing": [f"{f.path}: {f.why}" for f in result.differing], "jobs": list(jobs)}
