"""Browser tests: Debian's `chromium`, driven by Playwright's sync API, against a live gunicorn on the test database.

One browser for the session (headless; `--no-sandbox` because the suite may run as root), one server for the
session (tests commit their rows: `django_db(transaction=True)`), a fresh browser context per test. A failing
test leaves a full-page screenshot in `test-artifacts/` (or $MLCP_TEST_ARTIFACTS).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from controlplane.accounts import issue_token
from controlplane.roles import Role
from tests.support.webserver import ROOT, gunicorn_server

ARTIFACTS = Path(os.environ.get("MLCP_TEST_ARTIFACTS") or ROOT / "test-artifacts")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
PASSWORD = "correct horse battery staple"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets the `page` fixture know, at teardown, whether the test itself failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django refuse ORM calls
    # ("SynchronousOnlyOperation"); the tests do call the ORM between page steps, never from the loop itself.
    # Only while the browser runs: servers and commands that later tests start inherit this process's
    # environment, and `manage.py check --deploy` rightly refuses the setting.
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("the browser tests need Debian's chromium package (apt-get install chromium)")
    had = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
            yield browser
            browser.close()
    finally:
        if had is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = had


@pytest.fixture(scope="session")
def live_url(django_db_setup, tmp_path_factory):
    """A gunicorn serving mlcp on the test database for the whole session, static files collected first
    (as the image does at build time: WhiteNoise serves only what `collectstatic` put in MLCP_STATIC_ROOT)."""
    static_root = tmp_path_factory.mktemp("static")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True,
                   env=dict(os.environ, MLCP_STATIC_ROOT=str(static_root)))
    with gunicorn_server(MLCP_STATIC_ROOT=str(static_root)) as (url, _):
        yield url


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::", 1)[-1])
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()


@pytest.fixture
def sign_in(page, live_url):
    """`sign_in(Role.ONCALL, "alice")`: an account with that role, signed in through the login form."""

    def sign_in(role: Role, username: str):
        issue_token(username, role)
        user = get_user_model().objects.get(username=username)
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
        page.goto(f"{live_url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector(".who")
        return page

    return sign_in


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: nothing scrolls sideways)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def overflowing(page, limit: int = 5) -> list[str]:
    """The outermost elements that reach past the viewport's right edge, for a failure message."""
    return page.evaluate("""(limit) => {
        const out = [], width = window.innerWidth;
        for (const el of document.querySelectorAll('body *')) {
            if (el.getBoundingClientRect().right <= width + 0.5) continue;
            if (out.some(o => o.el.contains(el))) continue;
            out.push({el, text: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                      (el.className && el.className.baseVal === undefined ? '.' + el.className : '') +
                      ' right=' + Math.round(el.getBoundingClientRect().right)});
            if (out.length >= limit) break;
        }
        return out.map(o => o.text);
    }""", limit)
