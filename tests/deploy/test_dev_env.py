"""`make dev` (scripts/dev.sh): a variable set in the environment wins over .env, as it does for pydantic-settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ecg_shared.settings import REPO_ROOT

DEV_SH = REPO_ROOT / "scripts" / "dev.sh"
SHOW_KEY = (
    f'{sys.executable} -c "from ecg_shared.settings import get_settings; '
    "print('key=' + get_settings().api_key.get_secret_value())\""
)


def _run_procfile_definition() -> str:
    text = DEV_SH.read_text()
    definitions = re.findall(r"^run_procfile\(\) \{.*\}$", text, flags=re.MULTILINE)
    assert len(definitions) == 1, "scripts/dev.sh defines run_procfile once"
    calls = [line for line in text.splitlines() if re.search(r"\bhoncho\b", line) and not line.lstrip().startswith("#")]
    assert calls == definitions, f"every honcho call goes through run_procfile: {calls}"
    return definitions[0]


def _show_key(tmp_path: Path, **env: str) -> str:
    (tmp_path / "Procfile").write_text(f"show: {SHOW_KEY}\n")
    (tmp_path / ".env").write_text("ECG_API_KEY=from-dotenv\n")
    script = f"{_run_procfile_definition()}\nrun_procfile show"
    base = {k: v for k, v in os.environ.items() if k != "ECG_API_KEY"}
    path = f"{Path(sys.executable).parent}:{base.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**base, "PATH": path, "PYTHONPATH": os.pathsep.join(sys.path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (value,) = re.findall(r"key=(\S+)", result.stdout)
    return value


def test_under_make_dev_the_environment_wins_over_dotenv(tmp_path):
    assert _show_key(tmp_path, ECG_API_KEY="from-environment") == "from-environment"


def test_under_make_dev_dotenv_still_fills_what_the_environment_lacks(tmp_path):
    assert _show_key(tmp_path) == "from-dotenv"
