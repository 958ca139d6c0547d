"""The web console in a real headless browser (Debian's chromium, driven by Playwright)
against two real agent processes and the session's server: the figures on every view are
the database's, actions change documents and the fleet, sign-in and roles hold, a
cross-origin page cannot act, and hostile strings stay text. Screenshots of every view are
saved under ``CONSOLE_SCREENSHOTS`` (default: the test's tmp dir); with
``UPDATE_DOCS_SCREENSHOT=1`` the overview is written to docs/console-overview.png."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.system.conftest import ROOT

pytestmark = pytest.mark.system

ADMIN = "ops-token-0123456789abcdef"
READER = "grafana-token-0123456789ab"
HOSTILE = "<script>alert('pwned')</script><img src=x onerror=alert('img')>\x1b[2J"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(message: str) -> None:
    # PULLING_AGENT_MAY_SKIP=browser: a CI without Debian's chromium (GitHub's runners)
    if os.environ.get("CI") and "browser" not in os.environ.get("PULLING_AGENT_MAY_SKIP", ""):
        pytest.fail(message + " (CI must install it: make browser)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed: pip install -e '.[dev]'")
    if not os.path.exists(CHROMIUM):
        _missing("Chromium is not installed: make browser (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CONSOLE_SCREENSHOTS", tmp_path / "screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def fleet(spawn: Any, work: Any, tmp_path: Path) -> list[Any]:
    """Two agents with tokens and a job, paused by their control files (so the documents
    stay as seeded until a test lets them go), and a seeded collection."""
    now = datetime.now(UTC)
    work.insert_many(
        [
            {
                "status": "failed",
                "attempts": 3,
                "failed_at": now - timedelta(minutes=i),
                "error": {
                    "type": "KeyError" if i % 3 == 0 else "ValueError",
                    "message": f"row {i} {HOSTILE}",
                    "traceback": f"Traceback\n  {HOSTILE}",
                },
            }
            for i in range(12)
        ]
        + [{"_id": HOSTILE, "status": "failed", "error": {"type": HOSTILE, "message": HOSTILE}}]
        + [{"status": "pending", "n": i} for i in range(5)]
        + [{"_id": 42, "status": "Pending"}]
    )
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        'jobs:\n  - {id: nightly, trigger: cron, hour: 3, func: "tests.system.jobs:record"}\n'
    )
    env = {
        "API_TOKENS": f"ops:{ADMIN},grafana:{READER}:read",
        "API_HOST": "127.0.0.1",
        "JOBS_FILE": str(jobs),
        "JOB_LOG": str(tmp_path / "jobs.log"),
    }
    agents = [spawn(f"agent-{n}", **env) for n in range(2)]
    for agent in agents:
        agent.control_dir.mkdir(parents=True, exist_ok=True)
        (agent.control_dir / "state").write_text("pause")
    wait_until(lambda: all(a.api_port() for a in agents), what="both APIs listening")
    wait_until(lambda: all(a.liveness()[:1] == ["paused"] for a in agents), what="paused")
    return agents


def poll(page: Any, predicate: Any, what: str, seconds: float = 30) -> None:
    """Poll while letting Playwright dispatch events (a dialog waits for its handler,
    which runs only inside Playwright calls, never during a plain sleep)."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        page.wait_for_timeout(50)
    pytest.fail(f"timed out after {seconds}s waiting for {what}")


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/ui/overview")
    assert page.url.endswith("/ui/login?next=overview"), "a session is needed"
    page.fill('input[name="token"]', token)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{base}/ui/overview")


def test_every_view_shows_the_database_and_acts_on_it(
    browser: Any, fleet: list[Any], work: Any, shots: Path
) -> None:
    base = f"http://127.0.0.1:{fleet[0].api_port()}"
    dialogs: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)

    page.goto(f"{base}/ui/overview")
    page.fill('input[name="token"]', "not-a-token-at-all-0000")
    page.click('button[type="submit"]')
    assert "not accepted" in page.text_content("#login-error")

    sign_in(page, base, READER)
    assert page.text_content("#count-failed") == str(work.count_documents({"status": "failed"}))
    assert page.text_content("#count-pending") == "5"
    assert page.text_content("#live-agents") == "2"
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    page.goto(f"{base}/ui/agents")
    rows = page.locator("#agents tbody tr")
    assert rows.count() == 2
    assert sorted(rows.nth(i).get_attribute("data-agent") for i in range(2)) == [
        "agent-0",
        "agent-1",
    ]
    assert "control_file" in page.text_content("#agents")
    page.screenshot(path=str(shots / "agents.png"), full_page=True)

    page.goto(f"{base}/ui/dlq")
    assert page.locator("#failed tbody input[name=ids]").count() == 13
    page.locator("#failed tbody input[name=ids]").nth(1).check()
    page.click("text=Requeue selected")
    page.wait_for_selector("#flash:not(:empty)")
    assert "read role" in page.text_content("#flash"), "a read session cannot act"
    page.screenshot(path=str(shots / "dlq.png"), full_page=True)

    page.goto(f"{base}/ui/document?id=42")
    assert page.text_content("#doc-status") == "Pending"
    assert "status" in page.text_content("#problems")
    page.screenshot(path=str(shots / "document.png"), full_page=True)

    # as an admin: requeue two, then all KeyErrors
    context.clear_cookies()
    sign_in(page, base, ADMIN)
    page.goto(f"{base}/ui/dlq")
    boxes = page.locator("#failed tbody input[name=ids]")
    boxes.nth(1).check()
    boxes.nth(2).check()
    page.click("text=Requeue selected")
    page.wait_for_selector("#flash:not(:empty)")
    assert page.text_content("#flash") == "2 document(s) requeued"
    assert work.count_documents({"status": "failed"}) == 11
    keyerrors = work.count_documents({"status": "failed", "error.type": "KeyError"})
    assert keyerrors > 0
    page.goto(f"{base}/ui/dlq?type=%22KeyError%22")
    page.click("text=Requeue all matching")
    poll(page, lambda: any(f"all {keyerrors} matching" in d for d in dialogs), "the preview")
    poll(page, lambda: "requeued" in (page.text_content("#flash") or ""), "requeued")
    assert work.count_documents({"status": "failed", "error.type": "KeyError"}) == 0

    # scheduled jobs: run now records a run
    page.goto(f"{base}/ui/jobs")
    assert page.locator('#jobs tr[data-job="nightly"]').count() == 1
    page.click('#jobs tr[data-job="nightly"] >> text=Run now')
    page.wait_for_selector("#flash:not(:empty)")
    runs = work.database["agent_job_runs"]
    poll(page, lambda: runs.count_documents({"job_id": "nightly"}) >= 1, "a run recorded")
    page.goto(f"{base}/ui/jobs?job=nightly")
    poll(page, lambda: "succeeded" in (page.text_content("#runs") or ""), "the run listed")
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)

    # fleet control: the agents run (control files say so), a pause from the console
    # pauses both, and the view shows both acknowledgements
    for agent in fleet:
        (agent.control_dir / "state").write_text("resume")
    poll(page, lambda: all(a.liveness()[:1] == ["running"] for a in fleet), "both running")
    page.goto(f"{base}/ui/control")
    page.fill('input[name="reason"]', f"maintenance {HOSTILE}")
    page.click("text=Pause fleet")
    poll(page, lambda: "acknowledged by 2" in (page.text_content("#flash") or ""), "acks")
    poll(page, lambda: page.locator("#acks td.ack").all_text_contents() == ["yes", "yes"], "rows")
    assert page.text_content("#control-command") == "pause"
    poll(page, lambda: all(a.liveness()[:1] == ["paused"] for a in fleet), "both paused")
    assert "<script>" in page.text_content("#audit"), "the reason is shown as text"
    page.screenshot(path=str(shots / "control.png"), full_page=True)

    page.goto(f"{base}/ui/overview")  # after the work the fleet did meanwhile
    processed = work.count_documents({"status": "processed"})
    poll(page, lambda: page.text_content("#count-processed") == str(processed), "fresh counts")
    page.screenshot(path=str(shots / "overview-after.png"), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):  # the README's picture, without test strings
        work.database["agent_control"].delete_many({})  # the audit trail with them
        page.goto(f"{base}/ui/control")
        page.fill('input[name="reason"]', "nightly database maintenance")
        page.click("text=Pause fleet")
        poll(page, lambda: "acknowledged by 2" in (page.text_content("#flash") or ""), "acks")
        page.goto(f"{base}/ui/overview")
        poll(page, lambda: "maintenance" in (page.text_content("#audit") or ""), "shown")
        page.screenshot(path=str(ROOT / "docs" / "console-overview.png"))

    # a phone: the same pages, nothing wider than the screen
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    small = phone.new_page()
    phone.add_cookies(context.cookies())
    for view in ("overview", "agents", "dlq", "control"):
        small.goto(f"{base}/ui/{view}")
        wide = small.evaluate(
            "[...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > 391)"
            ".map(e => e.tagName + '.' + e.className).slice(0, 5)"
        )
        assert small.evaluate("document.documentElement.scrollWidth") <= 390, (view, wide)
        # the menu stays one row (it was a 250 px column), the rows-as-cards keep labels
        assert small.evaluate("document.querySelector('.top nav').offsetHeight") < 60, view
        unlabelled = small.evaluate(
            "[...document.querySelectorAll('table.grid')].flatMap(t => {"
            " const names = [...t.querySelectorAll('thead th')].map(th => th.textContent.trim());"
            " return [...t.querySelectorAll('tbody tr')].flatMap(r => [...r.children]"
            "  .filter((td, i) => names[i] && !td.hasAttribute('colspan') && !td.dataset.label));"
            "}).length"
        )
        assert unlabelled == 0, view
    small.screenshot(path=str(shots / "phone-control.png"), full_page=True)
    phone.close()

    unexpected = [d for d in dialogs if "pwned" in d or "img" in d]
    assert unexpected == [], "hostile markup never runs"
    context.close()


def test_a_page_from_another_origin_cannot_act(
    browser: Any, fleet: list[Any], work: Any, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{fleet[0].api_port()}"
    control = work.database["agent_control"]
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, base, ADMIN)

    attack = tmp_path / "attack"
    attack.mkdir()
    (attack / "index.html").write_text(
        "<script>fetch('" + base + "/ui/actions/cluster/shutdown', {method: 'POST', "
        "credentials: 'include', headers: {'Content-Type': 'text/plain'}, "
        "body: JSON.stringify({reason: 'csrf'})}).then(r => document.title = 'status ' + r.status)"
        ".catch(e => document.title = 'blocked')</script>"
    )
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(attack))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        poll(page, lambda: page.title() != "", "the attack page's result")
    finally:
        server.shutdown()
        server.server_close()
    assert control.find_one({"_id": "global_control", "command": "shutdown"}) is None
    assert all(a.process.poll() is None for a in fleet), "no agent was shut down"

    # an expired or forged session is asked to sign in again
    cookie = next(c for c in context.cookies() if c["name"] == "pa_console")
    context.add_cookies([{**cookie, "value": cookie["value"][:-2] + "AA"}])
    page.goto(f"{base}/ui/agents")
    assert "/ui/login" in page.url
    context.close()
