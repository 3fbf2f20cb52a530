"""The README is the user's manual: it must list every setting, and only real ones, and the commands it names."""

from __future__ import annotations

import re

from ecg_shared.settings import REPO_ROOT, Settings

README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"


def configuration_table() -> dict[str, str]:
    """``{variable: default column}`` from the README's Configuration section."""
    text = README.read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\|\s*`(ECG_[A-Z0-9_]+)`\s*\|([^|]*)\|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_every_setting_is_in_the_readme_configuration_table():
    documented = configuration_table()
    missing = sorted(f"ECG_{name.upper()}" for name in Settings.model_fields if f"ECG_{name.upper()}" not in documented)
    assert not missing, f"add these settings to README.md's Configuration table: {missing}"


def test_the_configuration_table_lists_only_real_settings():
    known = {f"ECG_{name.upper()}" for name in Settings.model_fields}
    stale = sorted(set(configuration_table()) - known)
    assert not stale, f"README.md documents settings that ecg_shared.settings lacks: {stale}"


def test_make_targets_named_in_the_readme_exist():
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", MAKEFILE.read_text(), re.M))
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", README.read_text()))
    assert named, "the README names no make targets"
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"
