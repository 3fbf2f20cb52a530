"""The training cache's eviction: least recently used chunks of the specs no job holds, never a held spec's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecg_shared.preprocessing import PreprocessingSpec
from ecg_training.cache import SignalCache, spec_key

LEADS = ("I", "II", "III")
CHUNK_BYTES = 1000 * len(LEADS) * 4  # each chunk below: one recording of 1000 samples, float32


def _spec(lowpass_hz: float) -> PreprocessingSpec:
    return PreprocessingSpec(sampling_rate=100, window_samples=500, leads=LEADS, lowpass_hz=lowpass_hz)


def _write(cache: SignalCache, spec: PreprocessingSpec, rid: int, used_at: float) -> Path:
    members = [(rid, f"{rid:064d}")]
    chunk = cache.write(spec, members, {rid: np.full((1000, len(LEADS)), rid, np.float32)})
    os.utime(chunk.path / "index.json", (used_at, used_at))
    return chunk.path


def _signals_bytes(cache: SignalCache) -> int:
    return sum(path.stat().st_size for path in cache.root.rglob("signals.f32"))


def test_evict_deletes_the_least_recently_used_chunks_until_the_cache_fits(tmp_path):
    cache = SignalCache(tmp_path)
    old, new = _spec(40), _spec(20)
    now = time.time()
    oldest = _write(cache, old, 1, now - 400)
    middle = _write(cache, old, 2, now - 300)
    opened_later = _write(cache, new, 3, now - 500)
    newest = _write(cache, new, 4, now - 100)
    assert cache.open(new, [(3, f"{3:064d}")]) is not None  # a job read it just now: it counts as used now

    before = cache.size()
    assert before > 4 * CHUNK_BYTES
    eviction = cache.evict(before - 1)  # one chunk must go: the least recently used
    assert (eviction.chunks_removed, eviction.before, eviction.in_use) == (1, before, 0)
    assert not oldest.exists() and middle.exists() and opened_later.exists() and newest.exists()
    assert eviction.after == cache.size() <= before - 1 and eviction.freed == before - eviction.after

    cache.evict(2 * CHUNK_BYTES + 2000)  # two chunks with their small index files fit
    assert not middle.exists() and opened_later.exists() and newest.exists()
    assert not (tmp_path / spec_key(old)).exists()  # a spec whose chunks are all gone goes too

    assert cache.evict(10**12).chunks_removed == 0  # under the limit: nothing happens
    again = cache.open(new, [(4, f"{4:064d}")])  # what is left reads as written
    assert np.array_equal(again.read(0), np.full((1000, len(LEADS)), 4, np.float32))


def test_evict_removes_what_crashed_writers_left(tmp_path):
    cache = SignalCache(tmp_path)
    spec = _spec(40)
    _write(cache, spec, 1, time.time())
    leftover = tmp_path / spec_key(spec) / ".0123abcd.deadbeef"  # a chunk whose writer died before the rename
    leftover.mkdir()
    (leftover / "signals.f32").write_bytes(b"\0" * 5000)
    eviction = cache.evict(cache.size() - 1)
    assert not leftover.exists() and eviction.freed >= 5000
    assert eviction.chunks_removed == 0  # removing the leftover was enough


HOLDER = """
import sys, time
from ecg_shared.preprocessing import PreprocessingSpec
from ecg_training.cache import SignalCache
spec = PreprocessingSpec(sampling_rate=100, window_samples=500, leads=("I", "II", "III"), lowpass_hz=40)
lease = SignalCache(sys.argv[1]).lease(spec)
print("held", flush=True)
time.sleep(600)
"""


def test_a_spec_another_process_holds_is_never_evicted_and_a_crash_releases_it(tmp_path):
    cache = SignalCache(tmp_path)
    held, free = _spec(40), _spec(20)
    held_chunk = _write(cache, held, 1, time.time() - 1000)  # the oldest: first to go, were it not held
    free_chunk = _write(cache, free, 2, time.time())
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        eviction = cache.evict(0)
        assert held_chunk.exists() and not free_chunk.exists()
        assert eviction.in_use == eviction.after > CHUNK_BYTES and eviction.chunks_removed == 1
    finally:
        holder.kill()  # as a crashed worker: no close(), the kernel drops its lock
        holder.wait()
    assert cache.evict(0).chunks_removed == 1 and not held_chunk.exists()


def test_a_lease_in_this_process_holds_its_spec_until_closed(tmp_path):
    cache = SignalCache(tmp_path)
    spec = _spec(40)
    chunk = _write(cache, spec, 1, time.time())
    lease = cache.lease(spec)
    assert cache.evict(0).chunks_removed == 0 and chunk.exists()
    lease.close()
    assert cache.evict(0).chunks_removed == 1 and not chunk.exists()


def test_a_job_evicts_other_specs_but_keeps_its_own_until_it_is_done(db_session, ptbxl_slice, tmp_path):
    from ecg_shared.settings import overridden_setting
    from ecg_training.data import load_training_data
    from tests.training.test_data import ptbxl_request

    stale = _write(SignalCache(tmp_path), _spec(40), 1, time.time() - 10**6)
    with (
        overridden_setting("ECG_TRAINING_CACHE_DIR", str(tmp_path)),
        overridden_setting("ECG_TRAINING_CACHE_MAX_SIZE", "1"),
    ):
        data = load_training_data(db_session, ptbxl_request(ptbxl_slice))
    assert not stale.exists()  # evicted once the job had its data
    (chunk,) = data.train.signals.chunks
    assert chunk.path.exists() and data.train.signals[0].shape == (500, 12)  # its own spec, held: kept, readable
    data.close()
    assert SignalCache(tmp_path).evict(0).chunks_removed == 1 and not chunk.path.exists()


@pytest.mark.parametrize("value, expected", [("0", 0), ("500MB", 500 * 10**6), ("2GiB", 2 * 2**30)])
def test_the_cache_limit_reads_sizes_with_units(value, expected):
    from ecg_shared.settings import get_settings, overridden_setting

    with overridden_setting("ECG_TRAINING_CACHE_MAX_SIZE", value):
        assert int(get_settings().training_cache_max_size) == expected
