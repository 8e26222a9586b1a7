"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright), against a real server.

The server is started as a user starts it, ``garrison server run`` (uvicorn) in a subprocess on a free local
port over SQLite; the browser creates the first administrator through the setup link it prints, logs in, builds
part of the organisation tree, switches to English and finds its changes in the activity log. Screenshots go to
``GARRISON_SCREENSHOTS`` (or the test's temporary directory) so that a person can look at how the pages read.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port as _free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "mật khẩu đủ dài và khó đoán"


pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``garrison server run`` on SQLite in a subprocess: its base URL and the setup link it printed."""
    port = _free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "GARRISON_DATA_DIR": str(tmp_path / "data"),
        "GARRISON_DATABASE_URL": "",
        "GARRISON_PASSWORD_TIME_COST": "1",
        "GARRISON_PASSWORD_MEMORY_KIB": "1024",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "garrison.cli", "server", "run", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen([*command, "--insecure-http"], stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        link = None
        while link is None or not _listening(port):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the server did not start:\n{log.read_text()}"
            found = re.search(r"(http://\S+/setup\?token=\S+)", log.read_text())
            link = found[1] if found else None
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", link
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_console_in_a_real_browser(server: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, setup_link = server
    shots = Path(os.environ.get("GARRISON_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    csv_file = tmp_path / "don-vi.csv"
    csv_file.write_text(
        "name,kind,parent,code,servers,workstations,other\n"
        "Sở Y tế,department,BN,SYT,2,150,10\n"
        "Bệnh viện Đa khoa tỉnh,unit,SYT,BVDK,3,220,15\n"
        "Sở Giáo dục và Đào tạo,department,BN,SGD,1,90,4\n"
        "UBND huyện Gia Bình,district,BN,GB,1,80,5\n",
        encoding="utf-8",
    )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="vi-VN")
        try:
            # First administrator, through the one-time link the server prints.
            page.goto(setup_link)
            expect(page.locator("h1")).to_have_text("Cài đặt lần đầu")
            page.fill("#username", "quantri")
            page.fill("#display_name", "Nguyễn Thị Hương")
            page.fill("#password", PASSWORD)
            page.fill("#password_again", PASSWORD)
            page.screenshot(path=shots / "01-setup.png", full_page=True)
            page.click("main button[type=submit]")
            expect(page.locator(".alert.ok")).to_contain_text("Đã tạo tài khoản quản trị")

            # Log in: a wrong password first, in plain words.
            page.fill("#username", "quantri")
            page.fill("#password", "sai mật khẩu rồi")
            page.click("main button[type=submit]")
            expect(page.locator(".alert.error")).to_have_text("Tên đăng nhập, mật khẩu hoặc mã xác thực không đúng.")
            page.screenshot(path=shots / "02-login-error.png", full_page=True)
            page.fill("#username", "quantri")
            page.fill("#password", PASSWORD)
            page.click("main button[type=submit]")
            expect(page.locator("h1")).to_have_text("Tổng quan")
            assert page.locator("html").get_attribute("lang") == "vi"
            page.screenshot(path=shots / "03-home-empty.png", full_page=True)

            # The province, by hand.
            page.click("text=Thêm cấp tỉnh")
            page.fill("#name", "Tỉnh Bắc Ninh")
            page.select_option("#kind", "province")
            page.fill("#code", "BN")
            page.fill("#declared_servers", "4")
            page.fill("#declared_workstations", "25")
            page.screenshot(path=shots / "04-unit-form.png", full_page=True)
            page.click("main button[type=submit]")
            expect(page.locator(".alert.ok")).to_have_text("Đã thêm đơn vị.")

            # The rest from a CSV file; a wrong line first, named in plain words.
            page.click("text=Nhập từ tệp CSV")
            wrong = tmp_path / "sai.csv"
            wrong_parent = csv_file.read_text(encoding="utf-8").replace(",unit,SYT,", ",unit,SYTE,")
            wrong.write_text(wrong_parent, encoding="utf-8")
            page.set_input_files("#file", str(wrong))
            page.click("main button[type=submit]")
            expect(page.locator(".alert.error")).to_contain_text(
                "Dòng 3 của tệp: không tìm thấy đơn vị cấp trên “SYTE”"
            )
            page.screenshot(path=shots / "05-import-error.png", full_page=True)
            page.set_input_files("#file", str(csv_file))
            page.click("main button[type=submit]")
            expect(page.locator(".alert.ok")).to_have_text("Đã nhập các đơn vị trong tệp.")
            expect(page.locator("tbody tr")).to_have_count(5)
            page.screenshot(path=shots / "05-units.png", full_page=True)

            page.click("nav >> text=Tổng quan")
            expect(page.locator(".figure .value").first).to_have_text("5")
            page.screenshot(path=shots / "06-home.png", full_page=True)

            # The activity log shows the changes; the filter works through htmx without a page load.
            page.click("nav >> text=Nhật ký hoạt động")
            expect(page.locator("#audit-results")).to_contain_text("Thêm đơn vị")
            page.select_option("#action", "unit.create")
            expect(page.locator("#audit-results tbody tr")).to_have_count(5)
            assert "action=unit.create" in page.url
            page.screenshot(path=shots / "07-audit.png", full_page=True)

            # English, on the same page and with the same filter.
            page.click("text=English")
            expect(page.locator("h1")).to_have_text("Activity log")
            assert page.locator("html").get_attribute("lang") == "en"
            expect(page.locator("#audit-results")).to_contain_text("Created a unit")
            expect(page.locator("#audit-results tbody tr")).to_have_count(5)
            expect(page.locator("#audit-results")).to_contain_text("Belongs to: Tỉnh Bắc Ninh")
            page.screenshot(path=shots / "08-audit-en.png", full_page=True)

            page.click("text=Tiếng Việt")
            page.click("nav >> text=Người dùng")
            expect(page.locator("tbody")).to_contain_text("Quản trị toàn tỉnh")
            page.screenshot(path=shots / "09-users.png", full_page=True)

            # An enrollment token: the ready-to-copy command is shown once.
            page.click("nav >> text=Mã đăng ký máy")
            page.select_option("#unit_id", label="Tỉnh Bắc Ninh")
            page.fill("#name", "Phòng Kế toán")
            page.click("main form.form button[type=submit]")
            expect(page.locator("pre.command")).to_contain_text(f"garrison agent enroll --server {base} --token gse_")
            expect(page.locator("tbody tr")).to_have_count(1)
            page.screenshot(path=shots / "10-enrollment.png", full_page=True)
            page.click("nav >> text=Máy tính")
            expect(page.locator("tbody")).to_contain_text("Không có máy tính nào")
            page.click("nav >> text=Phát hiện mã độc")
            expect(page.locator("tbody")).to_contain_text("Không có phát hiện nào")

            page.click("text=English")
            page.click("text=Log out")
            expect(page.locator("h1")).to_have_text("Log in to Garrison")
            page.goto(f"{base}/units")
            assert page.url == f"{base}/login?next=/units"
        finally:
            browser.close()
