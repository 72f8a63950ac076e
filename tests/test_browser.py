"""The first page in a real headless Chromium: type a prompt, see every column answer."""

import contextlib
import os
import shutil
import time

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
    page.get_by_label("Task bank").click()
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
    page.get_by_text("show prompt").first.click()
    panel = page.locator(".prompt-text textarea").first
    page.wait_for_function(
        "() => (document.querySelector('.prompt-text textarea')?.value ?? '').includes('Q: 2+3')", timeout=30_000
    )
    text = panel.input_value()
    assert text.startswith("<bos>Add the numbers.")  # the instruction, after the visible special token
    assert "Q: 1+1\nA: 2\n\nQ: 2+3\nA: 5\n\nQ: 4+4\nA:" in text  # both worked examples, then the question
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "few-shot-prompt.png"), full_page=True)


def wait_until(condition, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def answers_done(page, selector: str) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{selector}')].every("
        "c => c.querySelectorAll('[data-testid=\"bot\"]').length > 0)",
        timeout=60_000,
    )


def test_a_workshop_round_in_the_browser_lands_in_feedback_db(server, page, feedback_store):
    url, _, lineup = server
    page.goto(url)
    page.get_by_label("Your name (optional)").fill("aiko")
    box = page.get_by_label("Prompt").first
    box.fill("日本の首都は")
    box.press("Enter")
    answers_done(page, ".answer-column")
    wait_until(lambda: feedback_store.count("generations") == len(lineup.variants))  # stored as the stream ends
    columns = page.locator(".answer-column")
    columns.nth(0).get_by_label("Like", exact=True).click()
    columns.nth(1).get_by_label("Dislike", exact=True).click()
    page.get_by_label("Ideal answer").fill("日本の首都は東京です。")
    page.get_by_role("button", name="Save ideal answer").click()
    page.wait_for_function(  # the handler empties the box once the correction is stored
        "() => [...document.querySelectorAll('textarea')].every(t => !t.value.includes('東京です'))", timeout=10_000
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tab-compare.png"), full_page=True)

    page.get_by_role("tab", name="Arena (blind)").click()
    arena_box = page.get_by_label("Prompt").nth(1)
    arena_box.fill("Tell me about Tokyo")
    page.get_by_role("button", name="Ask both").click()
    answers_done(page, ".arena-column")
    page.get_by_role("button", name="A is better").click()  # waits until it is enabled: the answers are stored
    page.wait_for_function("() => (document.querySelector('.arena-reveal')?.innerText ?? '').includes('A =')", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "tab-arena.png"), full_page=True)
    revealed = page.locator(".arena-reveal").first.inner_text()

    page.get_by_role("tab", name="Leaderboard").click()
    page.get_by_text("blind comparisons").wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "tab-leaderboard.png"), full_page=True)
    page.get_by_role("tab", name="Data").click()
    page.get_by_text("dpo", exact=False).first.wait_for(timeout=10_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "tab-data.png"), full_page=True)

    generations = feedback_store.query("SELECT id, variant FROM generations ORDER BY id")
    assert len(generations) == len(lineup.variants) + 2  # the compare round and the two arena answers
    votes = feedback_store.query("SELECT generation_id, value, participant FROM votes ORDER BY id")
    assert votes == [
        {"generation_id": generations[0]["id"], "value": 1, "participant": "aiko"},
        {"generation_id": generations[1]["id"], "value": -1, "participant": "aiko"},
    ]
    corrections = feedback_store.query("SELECT generation_id, text FROM corrections")
    last_column = generations[len(lineup.variants) - 1]["id"]  # the ideal answer goes to the last column by default
    assert corrections == [{"generation_id": last_column, "text": "日本の首都は東京です。"}]
    comparisons = feedback_store.query("SELECT left_id, right_id, outcome, blind, participant FROM comparisons")
    arena_ids = [g["id"] for g in generations[-2:]]
    assert comparisons == [
        {"left_id": arena_ids[0], "right_id": arena_ids[1], "outcome": "left", "blind": 1, "participant": "aiko"}
    ]
    assert generations[-2]["variant"] in revealed and generations[-1]["variant"] in revealed


def test_the_page_speaks_japanese_to_a_japanese_browser(server):
    from playwright.sync_api import sync_playwright

    url, _, _ = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(locale="ja-JP", viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.get_by_role("button", name="送信").wait_for(timeout=30_000)
        assert page.get_by_role("tab", name="アリーナ（ブラインド）").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tab-compare-ja.png"), full_page=True)
        browser.close()


def test_the_page_says_the_model_is_loading_until_it_is_ready(runtime, tiny_lineup, page):
    from concurrent.futures import Future

    from gradio_client import Client

    from conftest import free_port
    from playground.ui.app import build_app, launch_options
    from playground.ui.loading import ModelLoading

    pending = Future()
    app = build_app(ModelLoading(pending), tiny_lineup, {})
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                       **launch_options())
    try:
        url = f"http://127.0.0.1:{port}/"
        page.goto(url)
        page.get_by_text("Loading the model").wait_for(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "loading.png"))
        client = Client(url, verbose=False)
        with pytest.raises(Exception) as error:
            client.predict("", "Hello", "zero", "", 3, "en", 8, 0, 0.95, 0, 1.0, 0, 1, ["base"], *[[]] * 6,
                           api_name="/compare")
        assert "The model is still loading" in str(error.value)
        pending.set_result(runtime)
        page.get_by_text("Loading the model").wait_for(state="hidden", timeout=30_000)
        assert runtime.model_id in page.locator("h2").first.inner_text() + page.content()
        _, answer, *_ = client.predict("", "Hello", "zero", "", 3, "en", 8, 0, 0.95, 0, 1.0, 0, 1, ["base"], *[[]] * 6,
                                       api_name="/compare")
        assert answer[1]["role"] == "assistant"
    finally:
        app.close()


def test_regenerate_asks_the_last_question_again(server, page, feedback_store):
    url, _, lineup = server
    page.goto(url)
    box = page.get_by_label("Prompt").first
    box.fill("Hello")
    box.press("Enter")
    wait_until(lambda: feedback_store.count("generations") == len(lineup.variants))
    page.get_by_role("button", name="Regenerate").click()
    wait_until(lambda: feedback_store.count("generations") == 2 * len(lineup.variants))
    page.wait_for_timeout(300)
    for index in range(len(lineup.variants)):  # one exchange per column, not two
        assert page.locator(".answer-column").nth(index).locator("[data-testid='user']").count() == 1
    prompts = [r["prompt"] for r in feedback_store.query("SELECT prompt FROM generations")]
    assert prompts == ["Hello"] * 2 * len(lineup.variants)


@contextlib.contextmanager
def training_app(runtime, lineup, tmp_path):
    """The app with a Train tab, over feedback that prefers polite answers; yields (url, store)."""
    from conftest import free_port
    from playground.ui.app import build_app, launch_options
    from playground.ui.train import TrainingPlace
    from test_training import separable_feedback

    store = separable_feedback(tmp_path / "feedback.db")
    place = TrainingPlace(store.path, lineup.source, "float32", tmp_path / "cache", tmp_path / "adapters")
    app = build_app(runtime, lineup, {}, store, place)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                       **launch_options())
    try:
        yield f"http://127.0.0.1:{port}/", store
    finally:
        app.close()


def retrain_in_the_page(page, steps: int, learning_rate: float) -> None:
    """In the Train tab: set the steps and the learning rate, press Retrain and wait until it is published."""
    box = page.get_by_label("number input for steps")
    box.fill(str(steps))
    box.press("Enter")
    page.get_by_label("learning rate").fill(str(learning_rate))
    page.get_by_role("button", name="Retrain / 再学習").click()
    page.get_by_text("done: published").wait_for(timeout=180_000)


def test_retrain_in_the_page_then_compare_the_new_version(runtime, tiny_lineup, tiny_paths, tmp_path, page):
    with training_app(runtime, tiny_lineup, tmp_path) as (url, store):
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        retrain_in_the_page(page, steps=3, learning_rate=0.001)
        page.get_by_text("Held-out preference accuracy").wait_for(timeout=10_000)
        page.wait_for_timeout(1500)  # let the curves finish drawing before the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tab-train.png"), full_page=True)
        assert (tmp_path / "adapters" / "rlhf" / "v1" / "card.json").is_file()
        assert "rlhf-v1" in runtime.adapters  # hot-loaded into the running app

        page.get_by_role("tab", name="Compare").click()
        page.get_by_label("rlhf-v1").check()  # the new version is a column choice at once
        box = page.get_by_label("Prompt").first
        box.fill("Question number 7?")
        box.press("Enter")
        wait_until(lambda: "rlhf-v1" in [r["variant"] for r in store.query("SELECT variant FROM generations")])
        row = store.query("SELECT * FROM generations WHERE variant = 'rlhf-v1'")[0]
        assert row["adapter_version"] == 1 and row["response"]
        run = store.run(1)
        assert run["status"] == "done" and [m["step"] for m in run["metrics"]] == [1, 2, 3]


def test_train_a_reward_model_in_the_page_then_answers_show_their_rewards(runtime, tiny_lineup, tmp_path, page):
    with training_app(runtime, tiny_lineup, tmp_path) as (url, store):
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.get_by_label("Reward model (pairs; best-of-n)").check()
        page.get_by_label("New adapter name (versions: adapters/NAME/vN)").fill("reward")
        retrain_in_the_page(page, steps=4, learning_rate=0.005)
        page.get_by_text("Held-out reward-model accuracy").wait_for(timeout=10_000)
        wait_until(lambda: runtime.reward is not None)  # hot-loaded as the app's reward model, not as a column
        assert runtime.reward.folder == tmp_path / "adapters" / "reward" / "v1"
        assert "reward-v1" not in runtime.adapters

        page.get_by_role("tab", name="Compare").click()
        box = page.get_by_label("Prompt").first
        box.fill("Question number 7?")
        box.press("Enter")
        page.get_by_text("Reward model").first.wait_for(timeout=60_000)
        scores = page.locator(".reward-scores").first.inner_text()
        assert all(f"{v.name}:" in scores for v in tiny_lineup.variants)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "compare-rewards.png"), full_page=True)


def test_html_and_script_in_a_prompt_are_shown_as_text_and_never_run(server, page):
    url, _, _ = server
    page.goto(url)
    box = page.get_by_label("Prompt").first
    attack = '<b>bold</b> <img src=x onerror="window.pwned=1"> <script>window.pwned=2</script>'
    box.fill(attack)
    box.press("Enter")
    user = page.locator(".answer-column [data-testid='user']").first
    user.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    assert page.evaluate("window.pwned") is None  # neither the handler nor the script ran
    assert page.locator(".answer-column b").count() == 0  # the tag was not rendered as bold
    assert "<b>bold</b>" in user.inner_text()  # it is shown as the text typed
