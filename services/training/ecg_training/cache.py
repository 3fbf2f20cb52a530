"""The training worker's on-disk cache of cleaned recordings: each recording cleaned once, read back in slices.

Recordings are cached in chunks of up to :data:`CHUNK_RECORDINGS`, under a folder per preprocessing spec::

    <ECG_TRAINING_CACHE_DIR>/<spec key>/<chunk key>/signals.f32            the cleaned signals, float32, end to end
                                                   index.json             ids, sample offsets, skipped recordings
                                                   features-<key>.npy     beat features of the usable recordings

The spec key is a hash of :meth:`PreprocessingSpec.to_json` (its version included) and of the preprocessing code,
the chunk key a hash of its
recordings' ids and content hashes, so a change of spec or of any recording's content leads to another folder; a
chunk is written under a temporary name and renamed into place, so a reader finds it whole or not at all (two
workers cleaning the same chunk at once: the second rename loses and its copy is dropped). Labels are not part of
the key: a review changes a label, not the cleaned signal.

Signals are read with ``os.pread`` into fresh arrays rather than memory-mapped: mapped pages count in the worker's
resident set as an epoch touches them, read ones stay in the kernel's page cache, which the kernel can drop.
Nothing here evicts old chunks; deleting the folder (or any chunk in it) is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ecg_shared import preprocessing
from ecg_shared.preprocessing import PreprocessingSpec

CHUNK_RECORDINGS = 500
SIGNALS, INDEX = "signals.f32", "index.json"
ITEM = np.dtype(np.float32).itemsize


def spec_key(spec: PreprocessingSpec) -> str:
    """The spec and the code that applies it: a change to :mod:`ecg_shared.preprocessing` cleans again too."""
    code = Path(preprocessing.__file__).read_bytes()
    return hashlib.sha256(spec.to_json().encode() + code).hexdigest()[:24]


def chunk_key(members: Sequence[tuple[int, str]]) -> str:
    """Of a chunk's recordings, as (id, content sha256) in order."""
    digest = hashlib.sha256()
    for rid, content in members:
        digest.update(f"{rid}:{content}\n".encode())
    return digest.hexdigest()[:32]


class Chunk:
    """One cached chunk: its recordings' ids, where each one's samples lie, and those that could not be cleaned."""

    def __init__(self, path: Path) -> None:
        index = json.loads((path / INDEX).read_text())
        self.path = path
        self.ids = np.asarray(index["ids"], dtype=np.int64)
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)  # in samples; a skipped recording has none
        self.n_leads = int(index["n_leads"])
        self.lengths = np.diff(self.offsets)
        self.skipped: dict[int, str] = {int(k): v for k, v in index["skipped"].items()}
        expected = int(self.offsets[-1]) * self.n_leads * ITEM
        if (path / SIGNALS).stat().st_size != expected:
            raise ValueError(f"cached chunk {path} is incomplete")

    @property
    def usable(self) -> np.ndarray:
        """Rows (positions in ``ids``) of the recordings that were cleaned."""
        return np.array([i for i, rid in enumerate(self.ids.tolist()) if rid not in self.skipped], dtype=np.int64)

    def length(self, row: int) -> int:
        return int(self.lengths[row])

    def read(self, row: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start:stop`` of the cleaned recording in ``row``: (n, n_leads) float32, a fresh array. The file is
        opened for each read (a few microseconds), so a million recordings' chunks need no million open files."""
        stop = self.length(row) if stop is None else min(stop, self.length(row))
        start = min(max(start, 0), stop)
        out = np.empty((stop - start, self.n_leads), dtype=np.float32)
        if out.size:
            offset = (int(self.offsets[row]) + start) * self.n_leads * ITEM
            fd = os.open(self.path / SIGNALS, os.O_RDONLY)
            try:
                got = os.preadv(fd, [memoryview(out).cast("B")], offset)
            finally:
                os.close(fd)
            if got != out.nbytes:
                raise OSError(f"cached chunk {self.path} ended early")
        return out

    def features(self, key: str, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """(usable recordings, n_features) beat features, computed once per feature spec ``key`` by ``compute``
        (a cleaned signal -> its feature vector) and kept beside the signals."""
        path = self.path / f"features-{key}.npy"
        if path.exists():
            return np.load(path)
        rows = self.usable
        vectors = np.stack([compute(self.read(int(row))) for row in rows]) if len(rows) else np.zeros((0, 0))
        vectors = vectors.astype(np.float32)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        with open(temporary, "wb") as handle:
            np.save(handle, vectors)
        os.replace(temporary, path)
        return vectors


class SignalCache:
    """Cleaned recordings on disk, by preprocessing spec and chunk of recordings (see the module's docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def folder(self, spec: PreprocessingSpec, members: Sequence[tuple[int, str]]) -> Path:
        return self.root / spec_key(spec) / chunk_key(members)

    def open(self, spec: PreprocessingSpec, members: Sequence[tuple[int, str]]) -> Chunk | None:
        """The cached chunk of ``members`` under ``spec``, or None when it is not cached (or unreadable)."""
        path = self.folder(spec, members)
        if not (path / INDEX).exists():
            return None
        try:
            return Chunk(path)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(path, ignore_errors=True)  # a damaged chunk is cleaned again
            return None

    def write(
        self, spec: PreprocessingSpec, members: Sequence[tuple[int, str]], cleaned: dict[int, np.ndarray | str]
    ) -> Chunk:
        """Store ``cleaned`` (id -> cleaned signal, or the reason it could not be cleaned) as the chunk of
        ``members``; every member must be in it."""
        path = self.folder(spec, members)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec_file = path.parent / "spec.json"
        if not spec_file.exists():
            spec_file.write_text(spec.to_json())
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        temporary.mkdir()
        offsets, skipped, n_leads = [0], {}, len(spec.leads)
        with open(temporary / SIGNALS, "wb") as handle:
            for rid, _ in members:
                value = cleaned[rid]
                if isinstance(value, str):
                    skipped[str(rid)] = value
                    offsets.append(offsets[-1])
                    continue
                array = np.ascontiguousarray(value, dtype=np.float32)
                if array.ndim != 2 or array.shape[1] != n_leads:
                    raise ValueError(f"recording {rid}: cleaned shape {array.shape} does not fit {n_leads} leads")
                handle.write(array.tobytes())
                offsets.append(offsets[-1] + array.shape[0])
        index = {"ids": [rid for rid, _ in members], "offsets": offsets, "n_leads": n_leads, "skipped": skipped}
        (temporary / INDEX).write_text(json.dumps(index))
        try:
            temporary.rename(path)
        except OSError:  # another worker stored the same chunk meanwhile: theirs is as good
            shutil.rmtree(temporary, ignore_errors=True)
        return Chunk(path)


class CachedSignals:
    """The cleaned signals of a split, read from cached chunks on demand: ``signals[i]`` is recording i's whole
    (n_samples, n_leads) array, ``read(i, start, stop)`` a slice of it, ``length(i)`` its length."""

    def __init__(self, chunks: list[Chunk], chunk_of: np.ndarray, row_of: np.ndarray) -> None:
        self.chunks = chunks
        self.chunk_of = np.asarray(chunk_of, dtype=np.int32)
        self.row_of = np.asarray(row_of, dtype=np.int32)
        self.lengths = np.zeros(len(self.chunk_of), dtype=np.int64)
        for c in np.unique(self.chunk_of):
            mine = self.chunk_of == c
            self.lengths[mine] = chunks[c].lengths[self.row_of[mine]]

    def __len__(self) -> int:
        return len(self.chunk_of)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.read(i)

    def length(self, i: int) -> int:
        return int(self.lengths[i])

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.chunks[self.chunk_of[i]].read(int(self.row_of[i]), start, stop)

    def subset(self, indices: np.ndarray) -> CachedSignals:
        return CachedSignals(self.chunks, self.chunk_of[indices], self.row_of[indices])
