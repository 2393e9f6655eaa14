"""The page at `/` in a real headless browser: task list, an image set on a task, its top 5 as bars."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
playwright = pytest.importorskip("playwright.sync_api")

from serve_helpers import ServerThread, build_task_files, copy_tasks, png
from vptune.serve.app import create_app
from vptune.serve.config import ServeConfig

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (make assets installs Debian's chromium as root)"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    files = build_task_files(root)
    server = ServerThread(create_app(ServeConfig(tasks_dir=copy_tasks(files, root / "tasks"))))
    yield server.start()
    server.stop()


def test_page_lists_tasks_and_shows_top5_bars_for_a_dropped_image(served, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(png(21))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(served.url + "/")
            cards = page.locator("section.task")
            cards.first.wait_for(timeout=30_000)
            assert sorted(cards.evaluate_all("cards => cards.map(c => c.dataset.task)")) == ["deep2", "deep5", "lin"]
            card = page.locator('section.task[data-task="deep5"]')
            card.locator("input[type=file]").set_input_files(str(image))
            card.locator(".result .row").nth(4).wait_for(timeout=30_000)
            labels = card.locator(".result .label").all_inner_texts()
            assert card.locator(".result .bar").count() == 5
            assert len(labels) == 5 and all(label.startswith("deep5-class") for label in labels)
            widths = card.locator(".result .bar").evaluate_all("bars => bars.map(b => b.getBoundingClientRect().width)")
            assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
            page.screenshot(path=str(tmp_path / "page.png"))

            page.goto(served.url + "/docs")  # the OpenAPI page, from local files (no internet needed)
            page.get_by_text("Top-k classes of one image for one task").wait_for(timeout=30_000)
            assert page.get_by_text("Prometheus metrics in text format").count() == 1
        finally:
            browser.close()
