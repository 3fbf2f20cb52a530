"""Start real service processes (uvicorn apps, Celery workers) for tests, with logs kept for failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ecg_shared.settings import REPO_ROOT
from tests.support.ports import wait_for_port

LOG_DIR = REPO_ROOT / "test-artifacts" / "logs"
VENV_BIN = Path(sys.executable).parent


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen
    log_path: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def start_process(
    name: str, command: list[str], env: dict[str, str] | None = None, port: int | None = None, timeout: float = 60.0
) -> ManagedProcess:
    """Run ``command`` (a venv tool name is resolved to .venv/bin) in its own process group; wait for ``port``."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    executable = VENV_BIN / command[0]
    argv = [str(executable) if executable.exists() else command[0], *command[1:]]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    process = subprocess.Popen(
        argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True
    )
    managed = ManagedProcess(name, process, log_path, port)
    if port is not None:
        try:
            wait_for_port(port, timeout=timeout, process=process)
        except Exception as exc:
            managed.stop()
            raise RuntimeError(f"{name} did not start: {exc}\n--- log ---\n{managed.log()[-4000:]}") from None
    return managed
