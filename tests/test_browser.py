"""The first page in a real headless Chromium: type a prompt, see every column answer."""

import os
import shutil

import pytest

from conftest import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

# CI sets PLAYGROUND_REQUIRE_BROWSER so that a missing browser fails there instead of skipping.
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("PLAYGROUND_REQUIRE_BROWSER"),
    reason="Debian's chromium is not installed (make test installs it when run as root)",
)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        yield page
        browser.close()


def test_prompt_streams_into_every_column_in_the_browser(server, page):
    url, _, lineup = server
    page.goto(url)
    box = page.get_by_label("Prompt")
    box.fill("日本の首都は")
    box.press("Enter")
    bots = page.locator(".answer-column")
    bots.last.wait_for()
    assert bots.count() == len(lineup.variants)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.answer-column')].every("
        "c => c.querySelectorAll('[data-testid=\"bot\"]').length > 0 && "
        "c.querySelector('[data-testid=\"bot\"]').innerText.trim().length > 0)",
        timeout=60_000,
    )
    texts = [bots.nth(i).locator("[data-testid='bot']").last.inner_text().strip() for i in range(bots.count())]
    assert all(texts) and len(set(texts)) == len(texts)  # every column answered, each differently
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "first-page.png"), full_page=True)


def test_few_shot_mode_and_show_prompt_in_the_browser(server, page):
    url, _, lineup = server
    page.goto(url)
    page.get_by_label("few-shot", exact=True).check()
    page.get_by_label("Task bank / タスク").click()
    page.get_by_role("option", name="Toy / おもちゃ").click()
    shots = page.get_by_label("number input for k (few-shot examples)")
    shots.fill("2")  # the toy bank has two English examples
    shots.press("Enter")
    box = page.get_by_label("Prompt")
    box.fill("4+4")
    box.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.answer-column')].every("
        "c => c.querySelectorAll('[data-testid=\"bot\"]').length > 0)",
        timeout=60_000,
    )
    page.get_by_text("show prompt / プロンプトを表示").first.click()
    panel = page.locator(".prompt-text textarea").first
    page.wait_for_function(
        "() => document.querySelector('.prompt-text textarea').value.includes('Q: 2+3')", timeout=30_000
    )
    text = panel.input_value()
    assert text.startswith("<bos>Add the numbers.")  # the instruction, after the visible special token
    assert "Q: 1+1\nA: 2\n\nQ: 2+3\nA: 5\n\nQ: 4+4\nA:" in text  # both worked examples, then the question
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "few-shot-prompt.png"), full_page=True)
