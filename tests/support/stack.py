"""Start any subset of the Procfile's processes as real processes, on free ports, wired to each other.

The commands come from the repository's ``Procfile`` (the one ``make dev`` and the Docker images run), so tests
exercise exactly what is deployed. Each ``${VAR:-default}`` in a command is expanded: ``*_PORT`` variables get a
free port (allocated for every entry up front, so a service that is not started, or is stopped, refuses
connections at a known address), ``*_HOST`` variables become 127.0.0.1, ``AZURITE_LOCATION`` a temporary folder.

Every process gets the same ``ECG_*`` environment: the test database, a Redis database of its own (see
:func:`claim_redis_db`: Celery queues of concurrent test runs never mix), the artifact store (the stack's own
Azurite, or the one passed in), ``ECG_INFERENCE_URL`` pointing at the stack's inference port, and ``ECG_API_KEY``.

    with start_stack(["inference", "gateway"], database_url=url, artifact_connection_string=cs) as stack:
        httpx.get(stack.url("gateway") + "/healthz")
        stack.stop("inference")        # now the gateway's downstream is down
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ecg_shared.settings import AZURITE_ACCOUNT_KEY, REPO_ROOT
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, start_process

PROCFILE = REPO_ROOT / "Procfile"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)")
_SHELL_OPERATORS = {"&&", "||", ";", "|", ">", "<", "&"}
# Celery workers have no port; they are ready when they log this line.
_WORKER_READY = re.compile(r"celery@\S+ ready\.")


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """``{process name: command line}`` in file order; comments and blank lines skipped."""
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, command = stripped.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name.strip()) or not command.strip():
            raise ValueError(f"{path}:{number}: not a 'name: command' line: {line!r}")
        entries[name.strip()] = command.strip()
    return entries


def command_variables(command: str) -> list[str]:
    return [m.group("name") or m.group("bare") for m in _VARIABLE.finditer(command)]


def expand_command(command: str, variables: dict[str, str]) -> list[str]:
    """Expand ``${VAR:-default}`` / ``$VAR`` as the shell would, then split into argv (no shell involved)."""

    def substitute(match: re.Match) -> str:
        name = match.group("name") or match.group("bare")
        value = variables.get(name) or os.environ.get(name)
        if value:
            return value
        if match.group("default") is not None:
            return match.group("default")
        raise KeyError(f"Procfile command needs ${name}, which is not set: {command!r}")

    argv = shlex.split(_VARIABLE.sub(substitute, command))
    if _SHELL_OPERATORS.intersection(argv):
        raise ValueError(f"Procfile command uses shell operators, which the test stack does not run: {command!r}")
    return argv


def redis_base_url() -> str:
    """The configured Redis server (ECG_REDIS_URL) without its database number."""
    from urllib.parse import urlsplit

    from ecg_shared.settings import get_settings

    parts = urlsplit(get_settings().redis_url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class _RedisClaim:
    index: int
    lock_file: IO

    def release(self) -> None:
        self.lock_file.close()


def claim_redis_db() -> _RedisClaim:
    """Hold an exclusive lock on one of Redis databases 1-15 for this stack and empty it.

    Database 0 is left to `make dev`. The lock (a file under the temp dir) keeps test runs that run at the same
    time on one machine off each other's Celery queues; flushing drops tasks a killed earlier run left behind.
    """
    import redis

    base = redis_base_url()
    for index in range(1, 16):
        lock_file = open(Path(tempfile.gettempdir()) / f"ecg-test-redis-db-{index}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            continue
        client = redis.Redis.from_url(f"{base}/{index}")
        client.flushdb()
        client.close()
        return _RedisClaim(index, lock_file)
    raise RuntimeError("all Redis databases 1-15 are held by other test stacks")


@dataclass
class Stack:
    """Processes of one test stack. Ports are fixed for the stack's lifetime, whether a process runs or not."""

    variables: dict[str, str]
    env: dict[str, str]
    procfile: dict[str, str]
    stack_id: str = field(default_factory=lambda: secrets.token_hex(3))  # names the log files
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    _cleanup: list = field(default_factory=list)

    def port(self, name: str) -> int:
        port_vars = [v for v in command_variables(self.procfile[name]) if v.endswith("_PORT")]
        if not port_vars:
            raise KeyError(f"Procfile entry {name!r} has no port")
        return int(self.variables[port_vars[0]])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port(name)}"

    def __getitem__(self, name: str) -> ManagedProcess:
        return self.processes[name]

    def argv(self, name: str) -> list[str]:
        if name not in self.procfile:
            raise KeyError(f"no {name!r} in the Procfile (has: {', '.join(self.procfile)})")
        return expand_command(self.procfile[name], self.variables)

    def start(self, name: str, timeout: float = 120.0) -> ManagedProcess:
        """Start one Procfile entry and wait until it listens (HTTP services) or logs ready (Celery workers)."""
        running = self.processes.get(name)
        if running is not None and running.alive():
            return running
        argv = self.argv(name)
        port = self.port(name) if any(v.endswith("_PORT") for v in command_variables(self.procfile[name])) else None
        process = start_process(f"{name}-{self.stack_id}", argv, env=self.env, port=port, timeout=timeout)
        if port is None and argv[0] == "celery":
            _wait_for_log(process, _WORKER_READY, timeout)
        self.processes[name] = process
        return process

    def stop(self, name: str | None = None) -> None:
        """Stop one process (SIGTERM, then SIGKILL), or all of them."""
        names = [name] if name else list(self.processes)
        for each in reversed(names):
            process = self.processes.get(each)
            if process is not None:
                process.stop()

    def close(self) -> None:
        self.stop()
        for cleanup in reversed(self._cleanup):
            cleanup()
        self._cleanup.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _wait_for_log(process: ManagedProcess, pattern: re.Pattern, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern.search(process.log()):
            return
        if not process.alive():
            break
        time.sleep(0.2)
    process.stop()
    raise RuntimeError(f"{process.name} did not become ready\n--- log ---\n{process.log()[-4000:]}")


def start_stack(
    names: Iterable[str],
    *,
    database_url: str,
    artifact_connection_string: str | None = None,
    api_key: str | None = None,
    env: dict[str, str] | None = None,
    procfile: Path = PROCFILE,
) -> Stack:
    """Start the named Procfile entries (in Procfile order: azurite before the services that use it).

    ``artifact_connection_string`` is required unless "azurite" is among ``names``. ``api_key`` defaults to a random
    one (``stack.env["ECG_API_KEY"]``). ``env`` adds or overrides variables for every process.
    """
    entries = read_procfile(procfile)
    wanted = set(names)
    unknown = wanted - set(entries)
    if unknown:
        raise KeyError(f"not in the Procfile: {', '.join(sorted(unknown))} (has: {', '.join(entries)})")

    variables: dict[str, str] = {}
    for command in entries.values():
        for var in command_variables(command):
            if var.endswith("_PORT"):
                variables.setdefault(var, str(free_port()))
            elif var.endswith("_HOST"):
                variables[var] = "127.0.0.1"
    cleanup: list = []
    if "AZURITE_PORT" in variables:
        location = tempfile.mkdtemp(prefix="stack-azurite-")
        variables["AZURITE_LOCATION"] = location
        cleanup.append(lambda: shutil.rmtree(location, ignore_errors=True))

    if "azurite" in wanted:
        artifact_connection_string = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{variables['AZURITE_PORT']}/devstoreaccount1;"
        )
    if artifact_connection_string is None:
        raise ValueError("pass artifact_connection_string (e.g. the azurite fixture's) or start 'azurite'")

    redis_claim = claim_redis_db()
    cleanup.append(redis_claim.release)
    stack_env = {
        "ECG_DATABASE_URL": database_url,
        "ECG_REDIS_URL": f"{redis_base_url()}/{redis_claim.index}",
        "ECG_ARTIFACT_CONNECTION_STRING": artifact_connection_string,
        "ECG_INFERENCE_URL": f"http://127.0.0.1:{variables.get('INFERENCE_PORT', '8001')}",
        "ECG_API_KEY": api_key or secrets.token_urlsafe(24),
        **(env or {}),
    }
    stack = Stack(variables, stack_env, entries, _cleanup=cleanup)
    try:
        for name in entries:
            if name in wanted:
                stack.start(name)
    except BaseException:
        stack.close()
        raise
    return stack
