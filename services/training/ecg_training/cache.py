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

A job holds a :class:`SpecLease` on each spec it reads (a shared ``flock`` on ``<cache>/.locks/<spec key>``, which
the kernel releases when the process ends, crashed or not). :meth:`SignalCache.evict` brings the cache under a size
by deleting the least recently used chunks (a chunk's ``index.json`` mtime: written, or opened by a job) of the specs
no job holds, taking each spec's lock exclusively while it deletes, so a job starting meanwhile waits and then
cleans what it needs again. Deleting the folder (or any chunk in it) by hand is always safe too, between jobs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ByteSize

from ecg_shared import preprocessing
from ecg_shared.preprocessing import PreprocessingSpec

CHUNK_RECORDINGS = 500
SIGNALS, INDEX = "signals.f32", "index.json"
ITEM = np.dtype(np.float32).itemsize
LOCKS = ".locks"  # <cache>/.locks/<spec key>: the flock a job holds shared while it uses that spec's chunks

log = logging.getLogger(__name__)


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

    def lease(self, spec: PreprocessingSpec) -> SpecLease:
        """Hold ``spec``'s chunks against :meth:`evict` until the lease is closed (or the process ends)."""
        return SpecLease(self.root / LOCKS / spec_key(spec), exclusive=False)

    def open(self, spec: PreprocessingSpec, members: Sequence[tuple[int, str]]) -> Chunk | None:
        """The cached chunk of ``members`` under ``spec``, or None when it is not cached (or unreadable). Opening it
        marks it used (its index's mtime), which :meth:`evict` orders by."""
        path = self.folder(spec, members)
        if not (path / INDEX).exists():
            return None
        try:
            chunk = Chunk(path)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(path, ignore_errors=True)  # a damaged chunk is cleaned again
            return None
        try:
            os.utime(path / INDEX)
        except OSError:  # a cache it may not write to (read-only mount): the chunk still reads
            pass
        return chunk

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

    def size(self) -> int:
        """Bytes the cache holds, every spec together."""
        return sum(_folder_bytes(folder) for folder in self._spec_folders())

    def evict(self, max_bytes: int) -> Eviction:
        """Delete the least recently used chunks of the specs no job holds a lease on (and what crashed writers left
        there) until the cache holds at most ``max_bytes``; the specs in use are never touched, so the cache may stay
        above ``max_bytes`` when they alone fill it."""
        # Each spec folder's entries (chunks, spec.json, temporaries) and their bytes, walked once.
        sizes = {folder: {entry: _entry_bytes(entry) for entry in folder.iterdir()} for folder in self._spec_folders()}
        total = sum(sum(entries.values()) for entries in sizes.values())
        freed, removed, in_use = 0, 0, 0
        if total <= max_bytes:
            return Eviction(total, total, 0, 0, 0)
        locks = []
        try:
            candidates = []
            for folder, entries in sizes.items():
                lock = SpecLease(self.root / LOCKS / folder.name, exclusive=True)
                if not lock.held:
                    in_use += sum(entries.values())
                    continue
                locks.append(lock)
                for entry, size in list(entries.items()):
                    if entry.name.startswith("."):  # a crashed writer's temporary chunk or features file
                        freed += size
                        _remove(entry)
                        del entries[entry]
                    elif entry.is_dir():
                        candidates.append((_last_use(entry), entry))
            candidates.sort(key=lambda item: item[0])
            for _, chunk in candidates:
                if total - freed <= max_bytes:
                    break
                freed += sizes[chunk.parent].pop(chunk)
                removed += 1
                _remove(chunk)
            for lock in locks:
                folder = self.root / lock.path.name
                if folder.is_dir() and not any(entry.is_dir() for entry in folder.iterdir()):
                    freed += sum(sizes[folder].values())  # the spec has no chunk left: its spec.json goes too
                    shutil.rmtree(folder, ignore_errors=True)
        finally:
            for lock in locks:
                lock.close()
        after = total - freed
        eviction = Eviction(total, after, freed, removed, in_use)
        if after > max_bytes:
            log.warning(
                "training cache %s: %s after eviction, above its limit of %s; %s of it are specs jobs use",
                self.root,
                _readable(after),
                _readable(max_bytes),
                _readable(in_use),
            )
        else:
            log.info(
                "training cache %s: removed %d chunks (%s) no job uses, least recently used first; %s left",
                self.root,
                removed,
                _readable(freed),
                _readable(after),
            )
        return eviction

    def _spec_folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [entry for entry in self.root.iterdir() if entry.is_dir() and not entry.name.startswith(".")]


@dataclass(frozen=True)
class Eviction:
    """What :meth:`SignalCache.evict` did: the cache's bytes before and after, bytes freed, chunks removed, and the
    bytes of the specs it left alone because a job held them."""

    before: int
    after: int
    freed: int
    chunks_removed: int
    in_use: int


class SpecLease:
    """A ``flock`` on one spec's lock file: shared (a job reading the spec; waits while an eviction deletes) or
    exclusive without waiting (an eviction; ``held`` is False when a job holds the spec)."""

    def __init__(self, path: Path, exclusive: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
            self.held = True
        except BlockingIOError:
            self.close()
            self.held = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __del__(self) -> None:
        self.close()


def _last_use(chunk: Path) -> float:
    try:
        return (chunk / INDEX).stat().st_mtime
    except OSError:  # no index: an unusable chunk, first to go
        return 0.0


def _entry_bytes(entry: Path) -> int:
    if entry.is_dir():
        return _folder_bytes(entry)
    try:
        return entry.stat().st_size
    except OSError:
        return 0


def _folder_bytes(folder: Path) -> int:
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def _readable(n_bytes: int) -> str:
    return ByteSize(n_bytes).human_readable()


def _remove(entry: Path) -> None:
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


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
