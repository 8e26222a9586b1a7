"""A new signature feed, uploaded in the console, reaches a real agent within one update interval, verified.

``garrison server run`` (on SQLite, then on PostgreSQL) and ``garrison agent run`` as real processes; in Debian's
headless Chromium an administrator enrolls the computer and uploads a hash list shared by the national authority
on the Signatures page. The server publishes a signed release; the agent installs it through python-tuf and
quarantines a file that only the new signature recognises. The Updates page and the computers list then show the
computer on that release, and nobody out of date. Screenshots go to ``GARRISON_SCREENSHOTS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import GARRISON, Process, _wait
from tests.integration.test_console_browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_protection_browser import set_up_and_enroll

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)"
)

#: The agent's update interval: the new signatures must be in use before it has passed once.
UPDATE_SECONDS = 60
SAMPLE = "Tài liệu này là mẫu thử của Garrison, không độc hại.\n".encode() * 40


def test_a_feed_uploaded_in_the_console_reaches_the_agent(server: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, setup_link = server
    shots = Path(os.environ.get("GARRISON_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    watched = tmp_path / "Văn bản đến"
    watched.mkdir()
    agent_env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("GARRISON_")},
        "GARRISON_AGENT_STATE_DIR": str(tmp_path / "agent"),
        "GARRISON_AGENT_REALTIME_PATHS": json.dumps([str(watched)]),
        "GARRISON_AGENT_REALTIME_ACTION": "quarantine",
        "GARRISON_AGENT_REALTIME_DEBOUNCE_SECONDS": "0.2",
        "GARRISON_AGENT_UPDATE_SECONDS": str(UPDATE_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }
    feed = tmp_path / "vncert-2026-12.hdb"
    feed.write_text(f"{hashlib.md5(SAMPLE).hexdigest()}:{len(SAMPLE)}:VNCERT.Trojan.HoaDonGia-1\n")
    agent: Process | None = None

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN", ignore_https_errors=True)
        page = context.new_page()
        try:
            set_up_and_enroll(page, base, setup_link, agent_env)
            agent = Process([*GARRISON, "-v", "agent", "run"], agent_env, tmp_path / "agent.log")
            _wait(lambda: "watching" in agent.text() or "real-time protection uses" in agent.text(), "protection")

            # Before the feed: the file is not recognised.
            early = watched / "hoá đơn giả.docx"
            early.write_bytes(SAMPLE)
            time.sleep(2)
            assert early.exists()
            early.unlink()

            # The national authority's hash list, uploaded as a new source.
            page.click("nav >> text=Mẫu nhận diện")
            page.fill("#upload-name", "vncert")
            page.fill("#upload-licence", "Chia sẻ bởi cơ quan chức năng, chỉ dùng nội bộ")
            page.set_input_files("#upload-file", str(feed))
            page.locator("form[action='/signatures/upload'] button[type=submit]").click()
            expect(page.locator("main")).to_contain_text("vncert")
            uploaded = time.monotonic()
            page.screenshot(path=shots / "updates-01-sources.png", full_page=True)

            # Published, signed, installed by the agent through TUF.
            _wait(lambda: "signature release 1 installed" in agent.text(), "the agent to install release 1", 90)
            sample = watched / "hoá đơn tháng 12.docx"
            sample.write_bytes(SAMPLE)
            _wait(lambda: not sample.exists(), "the file to be quarantined")
            elapsed = time.monotonic() - uploaded
            assert elapsed < UPDATE_SECONDS, f"{elapsed:.1f} s from the upload to the signature in use"

            # The console knows who is up to date: one computer runs release 1, and it opens that computer.
            page.click("nav >> text=Cập nhật")
            running = page.locator("[data-cell=running]").first

            def counted() -> bool:
                assert agent is not None and agent.process.poll() is None, agent.text() if agent else ""
                page.reload()
                return running.inner_text().strip() == "1"

            _wait(counted, "the computer on release 1 in the console")
            page.screenshot(path=shots / "updates-02-updates.png", full_page=True)
            running.click()
            expect(page.locator("main tbody tr")).to_have_count(1)
            page.screenshot(path=shots / "updates-03-computers.png", full_page=True)

            def reload_until(text: str) -> Callable[[], bool]:
                def seen() -> bool:
                    page.reload()
                    return text in page.locator("main").inner_text()

                return seen

            page.click("nav >> text=Phát hiện")
            _wait(reload_until("VNCERT.Trojan.HoaDonGia-1"), "the detection in the console")
            page.screenshot(path=shots / "updates-04-detection.png", full_page=True)
            assert "Traceback" not in agent.text()
        finally:
            browser.close()
            if agent is not None:
                agent.stop()
