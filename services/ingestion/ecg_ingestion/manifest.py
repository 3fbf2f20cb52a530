"""Manifests: the sheet listing what to ingest, one row per recording (blob name or URL, label, metadata columns).

Excel (``.xlsx``, read with openpyxl; the sheet is chosen by name, default the first) or CSV (comma or semicolon).
The first row holds the column names, matched without regard to case or surrounding spaces. Every other column
with a value becomes recording metadata.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time
from typing import Any

from openpyxl import Workbook, load_workbook  # at import (0.3 s), not inside the first job that reads a manifest
from pydantic import ValidationError

from ecg_shared.jobs.ingestion import ManifestRow

MANIFEST_NAME = "manifest.xlsx"
MANIFEST_SHEET = "recordings"


class ManifestError(ValueError):
    """The manifest cannot be used (unreadable, missing sheet or column). Ends the job."""


def read_manifest(
    data: bytes, name: str, sheet: str | None = None, blob_column: str = "blob", label_column: str | None = "label"
) -> list[ManifestRow]:
    """Rows of an ``.xlsx`` or ``.csv`` manifest named ``name``."""
    if name.lower().endswith(".xlsx"):
        table = _xlsx_rows(data, name, sheet)
    elif name.lower().endswith(".csv"):
        table = _csv_rows(data, name)
    else:
        raise ManifestError(f"manifest {name}: not an .xlsx or .csv file")
    return _manifest_rows(table, name, blob_column, label_column)


def _xlsx_rows(data: bytes, name: str, sheet: str | None) -> list[list[Any]]:
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, InvalidFileException... on bad input
        raise ManifestError(f"manifest {name} is not a readable Excel workbook: {type(exc).__name__}") from None
    try:
        if sheet is None:
            worksheet = workbook.worksheets[0]
        elif sheet in workbook.sheetnames:
            worksheet = workbook[sheet]
        else:
            raise ManifestError(f"manifest {name} has no sheet {sheet!r}; sheets: {', '.join(workbook.sheetnames)}")
        return [list(row) for row in worksheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _csv_rows(data: bytes, name: str) -> list[list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {name} is not UTF-8 text") from None
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]


def _find_column(header: list[str], wanted: str, name: str) -> int:
    keys = [h.strip().lower() for h in header]
    if wanted.strip().lower() not in keys:
        shown = ", ".join(h for h in header if h) or "none"
        raise ManifestError(f"manifest {name} has no column {wanted!r}; columns: {shown}")
    return keys.index(wanted.strip().lower())


def _metadata_value(value: Any) -> str | int | float | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def _row_problem(exc: ValidationError, blob_column: str, label_column: str | None) -> str:
    columns = {"blob": blob_column, "label": label_column or "label", "metadata": "metadata"}
    return "; ".join(
        f"column {columns.get(str(e['loc'][0]), e['loc'][0])!r}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors(include_input=False)
    )


def _manifest_rows(table: list[list[Any]], name: str, blob_column: str, label_column: str | None) -> list[ManifestRow]:
    table = [row for row in table if any(cell not in (None, "") for cell in row)]
    if not table:
        raise ManifestError(f"manifest {name} is empty")
    header = ["" if cell is None else str(cell) for cell in table[0]]
    blob_at = _find_column(header, blob_column, name)
    label_at = _find_column(header, label_column, name) if label_column else None
    other = [(i, h.strip()) for i, h in enumerate(header) if i not in (blob_at, label_at) and h.strip()]
    rows = []
    for line, cells in enumerate(table[1:], start=2):
        cells = list(cells) + [None] * (len(header) - len(cells))
        blob = cells[blob_at]
        if blob in (None, ""):
            raise ManifestError(f"manifest {name}, row {line}: the {blob_column!r} cell is empty")
        label = cells[label_at] if label_at is not None else None
        metadata = {key: _metadata_value(cells[i]) for i, key in other if cells[i] not in (None, "")}
        try:
            rows.append(
                ManifestRow(
                    blob=str(blob).strip(), label=None if label in (None, "") else str(label).strip(), metadata=metadata
                )
            )
        except ValidationError as exc:  # named by row and column, never with the cell's value (it may hold a SAS)
            problem = _row_problem(exc, blob_column, label_column)
            raise ManifestError(f"manifest {name}, row {line}: {problem}") from None
    if not rows:
        raise ManifestError(f"manifest {name} has a header row but no recordings")
    return rows


def write_manifest_xlsx(rows: list[ManifestRow], blob_column: str = "blob", label_column: str = "label") -> bytes:
    """An Excel manifest (sheet ``recordings``) as a clinic's sheet would look: blob, label, metadata columns."""
    extra = sorted({key for row in rows for key in row.metadata})
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(MANIFEST_SHEET)
    sheet.append([blob_column, label_column, *extra])
    for row in rows:
        sheet.append([row.blob, row.label, *(row.metadata.get(key) for key in extra)])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
