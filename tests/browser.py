"""Debian's headless Chromium driven by playwright, for the report and documentation tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(reason: str) -> None:
    """Skip, or fail where CI sets RDEX_REQUIRE_BROWSER=1 (there a missing tool is a failure)."""
    (pytest.fail if os.environ.get("RDEX_REQUIRE_BROWSER") else pytest.skip)(reason)


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A playwright browser on Debian's Chromium (never a downloaded browser), closed after."""
    if CHROMIUM is None:
        missing("chromium is not installed (Debian: apt-get install -y chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        missing("playwright is not installed (pip install playwright; it drives Debian's chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
