"""The gateway refuses a zip bomb (a 70 KB zip that would expand to 70 MiB) before inflating it, with or without the
trace it reads the recording for, and names the limit."""

from __future__ import annotations

import httpx
import pytest

from tests.inference.test_resource_bounds import wfdb_zip_bomb


@pytest.mark.parametrize("trace", ["false", "true"])
def test_a_zip_bomb_is_refused_with_the_limit_named(gateway_url, data_dir, trace):
    bomb = wfdb_zip_bomb(data_dir)
    response = httpx.post(
        f"{gateway_url}/classify",
        params={"trace": trace},
        files={"file": ("record.zip", bomb, "application/zip")},
        timeout=60,
    )
    assert response.status_code == 422, response.text
    assert "ECG_MAX_UNZIPPED_BYTES" in response.json()["detail"]
