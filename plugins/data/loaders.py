"""Reading raw records from files and hub datasets, with 1-based line numbers.

Supported inputs:

* local ``.jsonl`` (also ``.jsonl.gz``): one JSON object per line; blank lines are ignored.
* local ``.json``: an array of objects, or an object whose ``"data"`` key holds one.
* local ``.parquet`` and ``.csv`` (header row; cells holding JSON lists are parsed).
* a local dataset folder, or a hub dataset id ``owner/name`` / ``owner/name:split``, read
  with ``datasets.load_dataset``.

"Line" is the line in the file for JSONL, JSON and CSV (where the record starts), the
1-based row for Parquet and for ``load_dataset`` datasets.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import json
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from alignkit.core.errors import DataError
from alignkit.plugins.data import formats as F
from alignkit.plugins.data import records as R
from alignkit.plugins.data.records import RecordError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger("alignkit.data")

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".csv")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_CSV_JSON_FIELDS = ("messages", "conversations", "prompt", "completion", "chosen", "rejected")

Row = tuple[int, Any]  # (line, raw record or DataError)


# -- where a spec points ----------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """What a data option names: a local file, a local dataset folder or a hub dataset."""

    spec: str          # as the user wrote it (used in error messages)
    kind: str          # "file" | "folder" | "hub"
    target: str        # absolute path, or hub id
    split: str | None = None

    @property
    def source_name(self) -> str:
        """Default ``source`` of preference pairs: the file name or the dataset id."""
        if self.kind == "file":
            return Path(self.target).name
        name = Path(self.target).name if self.kind == "folder" else self.target
        return f"{name}:{self.split}" if self.split else name


def _absolute(path: str) -> Path:
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return Path(path)
    try:  # relative to where the user started alignkit, even if Hydra changed directory
        from hydra.utils import to_absolute_path

        return Path(to_absolute_path(path))
    except Exception:  # pragma: no cover - hydra is a dependency; be tolerant anyway
        return Path(path).absolute()


def _suffix(path: str) -> str:
    lower = path.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    return Path(lower).suffix


def locate(spec: str, default_split: str = "train") -> Location:
    """Resolve a data option. A missing local file is a ``DataError`` here, before any load."""
    spec = str(spec).strip()
    if not spec:
        raise DataError("empty data path")
    path = _absolute(spec)
    if path.is_file():
        if _suffix(spec) not in SUFFIXES:
            raise DataError(f"unsupported file type '{_suffix(spec) or spec}'; use one of: "
                            f"{', '.join(SUFFIXES)}", path=spec)
        return Location(spec, "file", str(path))
    if path.is_dir():
        return Location(spec, "folder", str(path), default_split)
    name, _, split = spec.partition(":")
    if split:
        folder = _absolute(name)
        if folder.is_dir():
            return Location(spec, "folder", str(folder), split)
    if _suffix(name) in SUFFIXES or name.startswith((".", "/", "~")):
        raise DataError("file not found", path=spec)
    if _HUB_ID.match(name):
        return Location(spec, "hub", name, split or default_split)
    raise DataError("not found: not a local file or folder, nor a hub dataset id "
                    "('owner/name' or 'owner/name:split')", path=spec)


# -- raw rows ---------------------------------------------------------------------------


def _utf8_error(exc: UnicodeDecodeError, data: bytes, path: str, line: int | None = None) -> DataError:
    bad = data[exc.start:exc.start + 1].hex()
    if line is None:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    else:
        column = exc.start + 1
    return DataError(f"not valid UTF-8 (byte 0x{bad} at column {column})", path=path, line=line)


def _jsonl_rows(loc: Location) -> Iterator[Row]:
    opener = gzip.open if loc.target.lower().endswith(".gz") else open
    with opener(loc.target, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, _utf8_error(exc, raw, loc.spec, number)
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=loc.spec, line=number)


def _read_text(loc: Location) -> str:
    data = Path(loc.target).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _utf8_error(exc, data, loc.spec) from None


def _json_rows(loc: Location) -> Iterator[Row]:
    text = _read_text(loc)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=loc.spec, line=exc.lineno) from None
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        items = document["data"]
    elif isinstance(document, list):
        items = document
    else:
        raise DataError("expected a JSON array of records or an object with a 'data' array", path=loc.spec, line=1)
    starts = _element_offsets(text, len(items))
    newlines = [m.start() for m in re.finditer("\n", text)]
    for offset, item in zip(starts, items):
        yield bisect.bisect_right(newlines, offset - 1) + 1, item


def _element_offsets(text: str, count: int) -> list[int]:
    """Character offsets where the elements of the records array start (text is valid JSON)."""
    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")

    def skip(i: int) -> int:
        return space.match(text, i).end()

    i = skip(0)
    if text[i] == "{":  # find the "data" key's array
        i = skip(i + 1)
        while True:
            key, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # past ':'
            if key == "data" and text[i] == "[":
                break
            _, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # past ','
    offsets: list[int] = []
    i = skip(i + 1)  # past '['
    while len(offsets) < count:
        offsets.append(i)
        _, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # past ','
    return offsets


def _csv_cell(field: str, value: str | None) -> Any:
    if value is None or value == "":
        return None
    if field in _CSV_JSON_FIELDS and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if isinstance(parsed, list) else value
    if field == "strength":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _csv_rows(loc: Location) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(_read_text(loc), newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise DataError(f"invalid CSV header: {exc}", path=loc.spec, line=1) from None
    if not header:
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, DataError(f"invalid CSV: {exc}", path=loc.spec, line=start)
            start = reader.line_num + 1
            continue
        if None in row:
            yield start, DataError(f"row has more cells than the header ({len(header)})", path=loc.spec, line=start)
        else:
            yield start, {k: _csv_cell(k, v) for k, v in row.items()}
        start = reader.line_num + 1


def _parquet_rows(loc: Location) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(loc.target)
    except Exception as exc:
        raise DataError(f"cannot read Parquet: {exc}", path=loc.spec) from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row


def _dataset_rows(loc: Location) -> Iterator[Row]:
    import datasets

    try:
        dataset = datasets.load_dataset(loc.target, split=loc.split)
    except Exception as exc:
        where = "hub dataset" if loc.kind == "hub" else "dataset folder"
        raise DataError(f"cannot load {where} (split '{loc.split}') with datasets.load_dataset: "
                        f"{type(exc).__name__}: {exc}", path=loc.spec) from None
    for number, row in enumerate(dataset, start=1):
        yield number, row


def iter_rows(loc: Location) -> Iterator[Row]:
    """``(line, record)`` pairs; an unreadable record comes as ``(line, DataError)``.

    A file that cannot be read at all (a broken JSON document, a non-UTF-8 JSON or CSV
    file, an unreadable Parquet file) raises ``DataError`` instead.
    """
    if loc.kind != "file":
        return _dataset_rows(loc)
    suffix = _suffix(loc.target)
    if suffix == ".json":
        return _json_rows(loc)
    if suffix == ".csv":
        return _csv_rows(loc)
    if suffix == ".parquet":
        return _parquet_rows(loc)
    return _jsonl_rows(loc)  # .jsonl, .jsonl.gz, and any other name a caller accepts (label import)


# -- loading one file -------------------------------------------------------------------


@dataclass
class Loaded:
    dataset: datasets.Dataset
    format: str
    skipped: int = 0
    first_error: DataError | None = None
    truncated: int = 0  # records with a text cut to ``max_chars`` characters
    identical: int = 0  # preference pairs dropped because 'chosen' == 'rejected'
    identical_lines: tuple[int, ...] = ()  # the first few of their lines


SHOWN_LINES = 5  # line numbers of dropped identical pairs named in the log


def load(loc: Location, kind: str, *, fmt: str = F.AUTO, on_bad_record: str = "error",
         max_chars: int | None = None) -> Loaded:
    """Read, validate and convert every record of ``loc`` to the normalised ``kind`` shape.

    With ``max_chars``, every text of a record is cut to that many characters before anyone
    tokenises it. Preference pairs whose ``chosen`` and ``rejected`` are the same text carry
    no preference and are dropped (and counted), like ties in the label stage.

    :raises DataError: on the first bad record (``on_bad_record="error"``), when no valid
        record is left, or when every preference pair is identical.
    """
    from datasets import Dataset

    out: list[dict[str, Any]] = []
    skipped, first_error, file_format, truncated = 0, None, None, 0
    identical: list[int] = []
    for line, raw in iter_rows(loc):
        try:
            if isinstance(raw, DataError):
                raise raw
            if not isinstance(raw, dict):
                raise DataError(f"expected a JSON object, got {R.type_name(raw)}", path=loc.spec, line=line)
            record_format = file_format or F.choose_format(raw, kind, fmt)
            record = F.convert(raw, kind, record_format, loc.source_name)
        except (RecordError, DataError) as exc:
            error = exc if isinstance(exc, DataError) else DataError(
                exc.message, path=loc.spec, line=line, field=exc.field)
            if on_bad_record != "skip":
                raise error from None
            skipped += 1
            first_error = first_error or error
            continue
        file_format = record_format
        if max_chars is not None and R.truncate(record, max_chars):
            truncated += 1
        if kind == "preferences" and record["chosen"] == record["rejected"]:
            identical.append(line)
            continue
        out.append(record)
    if identical and not out:
        raise DataError(f"all {len(identical)} preference pair(s) have identical 'chosen' and 'rejected' "
                        "(no preference signal); nothing to learn from. Give pairs whose answers differ",
                        path=loc.spec)
    if not out:
        detail = f" ({skipped} bad record(s) skipped; first: {first_error})" if skipped else ""
        raise DataError(f"no valid {kind} records{detail}", path=loc.spec)
    if skipped:
        log.warning("data: skipped %d bad %s record(s) in %s (kept %d); first: %s",
                    skipped, kind, loc.spec, len(out), first_error)
    if truncated:
        log.warning("data: %d %s record(s) in %s cut to %d characters per text (data.max_chars_per_field)",
                    truncated, kind, loc.spec, max_chars)
    if identical:
        lines = ", ".join(map(str, identical[:SHOWN_LINES])) + (", ..." if len(identical) > SHOWN_LINES else "")
        log.warning("data: dropped %d preference pair(s) of %s with identical 'chosen' and 'rejected' "
                    "(no preference signal; line%s %s)", len(identical), loc.spec,
                    "s" if len(identical) > 1 else "", lines)
    log.info("data: %d %s record(s) from %s (format %s)", len(out), kind, loc.spec, file_format)
    dataset = Dataset.from_list(out, features=R.features(kind))
    return Loaded(dataset, file_format or fmt, skipped, first_error, truncated, len(identical),
                  tuple(identical[:SHOWN_LINES]))


def holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, eval) indices: ``round(n * fraction)`` eval records, at least
    one when ``n >= 2`` and ``fraction > 0``, never all. Both keep the file order."""
    if fraction <= 0 or n < 2:
        return list(range(n)), []
    k = min(max(int(n * fraction + 0.5), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    return [i for i in range(n) if i not in held], sorted(held)
