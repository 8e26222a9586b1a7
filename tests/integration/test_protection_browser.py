"""The whole protection loop as a person lives it, in Debian's headless Chromium against real processes.

``garrison server run`` serves HTTPS with its own certificate (on SQLite, then on PostgreSQL); in the console an
administrator makes an enrollment token, and the enroll command the page shows is run as is; ``garrison agent
run`` then protects a folder in real time. EICAR dropped into the folder is quarantined, the detection appears on
the dashboard, and the administrator restores the file from the console's quarantine page: it comes back with the
same bytes, and is not quarantined again. Screenshots go to ``GARRISON_SCREENSHOTS`` (or the test's temporary
directory).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from garrison.engine.eicar import EICAR
from tests.integration.conftest import GARRISON, Process, _wait
from tests.integration.test_console_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)"
)


def set_up_and_enroll(page: Any, base: str, setup_link: str, agent_env: dict[str, str]) -> None:
    """In the console: the first administrator, a province, an enrollment token; then the enroll command the page
    shows, run as a technician runs it."""
    from playwright.sync_api import expect

    # The first administrator, then the province.
    page.goto(setup_link)
    page.fill("#username", "quantri")
    page.fill("#display_name", "Trần Văn Minh")
    page.fill("#password", PASSWORD)
    page.fill("#password_again", PASSWORD)
    page.click("main button[type=submit]")
    page.fill("#username", "quantri")
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Tổng quan")
    page.click("text=Thêm cấp tỉnh")
    page.fill("#name", "Tỉnh Bắc Ninh")
    page.select_option("#kind", "province")
    page.fill("#declared_workstations", "1")
    page.click("main button[type=submit]")
    expect(page.locator(".alert.ok")).to_have_text("Đã thêm đơn vị.")

    # An enrollment token; the command shown is the one a technician runs on the computer.
    page.click("nav >> text=Mã đăng ký máy")
    page.select_option("#unit_id", label="Tỉnh Bắc Ninh")
    page.fill("#name", "Máy kế toán")
    page.click("main form.form button[type=submit]")
    command = page.locator("pre.command").inner_text().strip()
    assert command.startswith(f"garrison agent enroll --server {base} --token gse_")
    assert "--fingerprint" in command
    words = shlex.split(command)
    enrolled = subprocess.run(
        [*GARRISON, *words[1:]], env=agent_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr


def test_a_detection_is_seen_quarantined_and_restored_from_the_console(server: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, setup_link = server
    shots = Path(os.environ.get("GARRISON_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    watched = tmp_path / "Tài liệu"
    watched.mkdir()
    agent_env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("GARRISON_")},
        "GARRISON_AGENT_STATE_DIR": str(tmp_path / "agent"),
        "GARRISON_AGENT_REALTIME_PATHS": json.dumps([str(watched)]),
        "GARRISON_AGENT_REALTIME_ACTION": "quarantine",
        "GARRISON_AGENT_REALTIME_DEBOUNCE_SECONDS": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    agent: Process | None = None

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN", ignore_https_errors=True)
        page = context.new_page()
        try:
            set_up_and_enroll(page, base, setup_link, agent_env)
            page.screenshot(path=shots / "e2e-01-enrollment.png", full_page=True)

            agent = Process([*GARRISON, "-v", "agent", "run"], agent_env, tmp_path / "agent.log")
            page.click("nav >> text=Máy tính")
            _wait(lambda: "real-time protection uses" in agent.text() or "watching" in agent.text(), "protection")

            def reload_until(text: str) -> Callable[[], bool]:
                def seen() -> bool:
                    assert agent is not None and agent.process.poll() is None, agent.text() if agent else ""
                    page.reload()
                    return text in page.locator("main").inner_text()

                return seen

            _wait(reload_until("Đang trực tuyến"), "the computer online in the console")
            page.screenshot(path=shots / "e2e-02-computers.png", full_page=True)

            # A user saves an infected file in the protected folder: it is quarantined at once.
            sample = watched / "hoá đơn tháng 11.com"
            sample.write_bytes(EICAR)
            _wait(lambda: not sample.exists(), "the file to be quarantined")

            # The detection on the dashboard, one click from its evidence.
            page.click("nav >> text=Tổng quan")
            figure = page.locator("[data-figure=detections] .value")

            def counted() -> bool:
                page.reload()
                return figure.inner_text().strip() == "1"

            _wait(counted, "the detection on the dashboard")
            page.screenshot(path=shots / "e2e-03-dashboard.png", full_page=True)
            page.click("[data-figure=detections]")
            expect(page.locator("main tbody")).to_contain_text("Eicar-Test-Signature")
            page.screenshot(path=shots / "e2e-04-detections.png", full_page=True)

            _the_quarterly_report(page, shots, tmp_path)

            # Restore from the quarantine page; the agent does it at its next contact.
            page.click("nav >> text=Cách ly")
            expect(page.locator("main tbody")).to_contain_text("hoá đơn tháng 11.com")
            page.screenshot(path=shots / "e2e-05-quarantine.png", full_page=True)
            page.once("dialog", lambda dialog: dialog.accept())
            page.locator("main tbody tr", has_text="hoá đơn tháng 11.com").get_by_role(
                "button", name="Khôi phục"
            ).click()
            _wait(sample.exists, "the file to come back")
            assert sample.read_bytes() == EICAR
            page.screenshot(path=shots / "e2e-06-restore-task.png", full_page=True)
            page.click("nav >> text=Cách ly")
            page.select_option("#state", "restored")
            _wait(reload_until("Đã khôi phục"), "the restored state in the console")
            page.screenshot(path=shots / "e2e-07-restored.png", full_page=True)

            # A person decided it is safe: real-time protection leaves it alone now.
            time.sleep(2)
            assert sample.read_bytes() == EICAR
            assert "Traceback" not in agent.text()
        finally:
            browser.close()
            if agent is not None:
                agent.stop()


def _the_quarterly_report(page: Any, shots: Path, tmp_path: Path) -> None:
    """On the Statistics page, the admin downloads this quarter's report as Word, PDF and Excel: each file holds
    the detection just made, as the statistics API counts it."""
    import docx
    import pypdf
    from openpyxl import load_workbook

    page.click("nav >> text=Thống kê")
    page.click("#quarterly-report summary")
    page.fill("#report-number", "15")
    page.fill("#report-signer-name", "Trần Văn Minh")
    page.screenshot(path=shots / "e2e-report-01-form.png", full_page=True)
    figures = page.request.get(page.url.split("/statistics")[0] + "/api/v1/statistics").json()
    detections = figures["detections"]["detections"]["value"]
    assert detections == 1
    files: dict[str, Path] = {}
    for kind in ("docx", "pdf", "xlsx"):
        with page.expect_download() as download:
            page.click(f"[data-report={kind}]")
        files[kind] = tmp_path / f"report.{kind}"
        download.value.save_as(files[kind])
    document = docx.Document(str(files["docx"]))
    infections = [[cell.text for cell in row.cells] for row in document.tables[2].rows]
    assert ["1", "Lượt phát hiện mã độc", str(detections), "", ""] in infections
    assert document.tables[0].rows[1].cells[0].text.startswith("Số: 15/BC-")
    printed = " ".join(" ".join(sheet.extract_text().split()) for sheet in pypdf.PdfReader(files["pdf"]).pages)
    assert f"Lượt phát hiện mã độc {detections}" in printed and "Trần Văn Minh" in printed
    sheet = load_workbook(files["xlsx"]).worksheets[1]
    assert ["Lượt phát hiện mã độc", detections] in [list(row[1:3]) for row in sheet.iter_rows(values_only=True)]
