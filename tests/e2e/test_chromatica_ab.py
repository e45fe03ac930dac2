"""Chromatica's own load line, ``ab -n 100 -c 20 .../search?colors=FF0000...``, against a
real two-worker server: every request must succeed."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED_DATA
from tests.e2e.server import running

pytestmark = pytest.mark.e2e

PHOTOS = sorted((SHARED_DATA / "photos" / "color").iterdir())


def test_chromatica_ab_line_has_no_failed_requests(tmp_path: Path) -> None:
    ab = shutil.which("ab")
    assert ab is not None, "ab (apache2-utils) is installed by scripts/test.sh"
    with running(tmp_path / "data", workers=2, log=tmp_path / "server.log") as server:
        r = httpx.put(server.url + "/collections/colors", json={"encoder": "color"})
        assert r.status_code == 201, r.text
        items = [{"id": p.name, "image": base64.b64encode(p.read_bytes()).decode()} for p in PHOTOS]
        r = httpx.post(server.url + "/collections/colors/items", json={"items": items}, timeout=60)
        assert r.status_code == 200, r.text
        url = server.url + "/search?colors=FF0000&weights=1.0&k=10&fast_mode=true"
        done = subprocess.run(
            [ab, "-n", "100", "-c", "20", url], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        report = done.stdout
        assert re.search(r"Complete requests:\s+100\b", report), report
        assert re.search(r"Failed requests:\s+0\b", report), report
        assert "Non-2xx responses" not in report, report
        answer = httpx.get(url).json()
        assert answer["results_count"] == 10
        assert answer["metadata"]["index_size"] == len(PHOTOS)
