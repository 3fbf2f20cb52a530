"""The decoding pool's processes die with the job process that forked them.

They inherit its database connections: an orphan that outlived a SIGKILLed job process kept that connection, and the
row lock of its open transaction, alive in Postgres, so the attempt that took the job over waited on the job's row
forever (seen in full-suite runs of test_outages' killed-pool-process test). This reproduces that directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from tests.ingestion.conftest import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

JOB_PROCESS = textwrap.dedent(
    """
    import sys, time
    import psycopg
    from ecg_ingestion.decode import decode_pool

    connection = psycopg.connect(sys.argv[1])
    connection.execute("SELECT * FROM pool_lock_probe WHERE id = 1 FOR UPDATE")  # an open transaction's row lock
    pool = decode_pool(2)
    children = sorted(pool._processes)
    print(" ".join(map(str, children)), flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_job_process_takes_its_decoding_processes_and_row_locks_with_it(database_url):
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE pool_lock_probe (id int PRIMARY KEY)")
        setup.execute("INSERT INTO pool_lock_probe VALUES (1)")
    job = subprocess.Popen([sys.executable, "-c", JOB_PROCESS, dsn], stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        children = [int(pid) for pid in job.stdout.readline().split()]
        assert len(children) == 2 and all(_alive(pid) for pid in children)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=10)
        wait_until(lambda: not any(_alive(pid) for pid in children), timeout=10, what="the decoding processes to die")
        started = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as taker:
            taker.execute("SET lock_timeout = '10s'")
            taker.execute("SELECT * FROM pool_lock_probe WHERE id = 1 FOR UPDATE")  # raises LockNotAvailable if held
        assert time.monotonic() - started < 10
    finally:
        for pid in [job.pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        with psycopg.connect(dsn, autocommit=True) as cleanup:
            cleanup.execute("DROP TABLE IF EXISTS pool_lock_probe")
