"""The report of a 10,000-input build in a real browser (soak: about 90 s).

The benchmark (``python -m bench --only report``) times the same page's load; this test
checks what must hold on any machine: the page stays small, every image loads, and no
script error occurs.
"""

from __future__ import annotations

import pytest

from bench import html_report
from bench.common import Context

pytestmark = pytest.mark.soak


def test_a_10000_input_report_is_small_and_renders_cleanly(tmp_path):
    rows = {r.benchmark.rsplit(": ", 1)[1]: r for r in html_report.run(Context(tmp_path))}
    assert rows["file size"].verdict == "pass", rows["file size"]
    assert "no console error, every image loaded" in rows[
        "load in headless Chromium"].notes[0]
