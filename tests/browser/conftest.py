"""Browser tests: Debian's chromium driven by Playwright against the app served over real
HTTP, with real commits (row-level security applies as in production).

Playwright never downloads a browser here: it launches /usr/bin/chromium (`make test`
installs it as root when missing). Without it the tests are skipped, except on CI.
Set PORTAL_SCREENSHOTS=<folder> to save the screenshots the tests take (desktop and phone).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.db import connections

from tests.factories import DEFAULT_PASSWORD
from tests.stripe.conftest import LiveApp
from treasury.models import User
from treasury.stripe_standin import RunningStandin, start_standin

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


class PagesApp(LiveApp):
    """The app over HTTP with its static files (Chart.js, the pages' CSS and JS) served
    too, as `runserver --insecure` does in the demo."""

    def __init__(self) -> None:
        super().__init__()
        from treasury.wsgi import application

        self._server.set_app(StaticFilesHandler(application))


@pytest.fixture
def browser(live_pages: PagesApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Chromium for one test. Playwright's sync API keeps an event loop running in this
    thread, and Django refuses database calls where a loop runs unless told they are safe:
    they are, the test thread only reads and writes its own rows (the app serves requests
    from its own threads)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no chromium at {CHROMIUM}: `make test` installs Debian's as root")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def stripe_standin() -> Iterator[RunningStandin]:
    running = start_standin(port=0)
    yield running
    running.stop()


@pytest.fixture
def live_pages(
    committed_db: None, settings: Any, stripe_standin: RunningStandin
) -> Iterator[PagesApp]:
    """The pages on 127.0.0.1 with the Stripe stand-in behind them; sales are available for
    payout at once and no payout is held for review (both have their own tests)."""
    settings.STRIPE_API_BASE = stripe_standin.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 10_001
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    runtime = connections.settings["default"]
    saved_max_age = runtime.get("CONN_MAX_AGE", 0)
    runtime["CONN_MAX_AGE"] = None  # each server worker keeps its connection
    app = PagesApp()
    yield app
    app.stop()
    runtime["CONN_MAX_AGE"] = saved_max_age


@pytest.fixture
def open_page(browser: Any, live_pages: PagesApp) -> Iterator[Any]:
    """A new browser window (desktop by default, `phone=True` for a phone) on the app."""
    contexts = []

    def make(*, phone: bool = False) -> Any:
        context = browser.new_context(base_url=live_pages.url, **(PHONE if phone else DESKTOP))
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        # Nothing may come from the internet: every request goes to the app.
        page.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(live_pages.url) else route.abort()
            ),
        )
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, user: User, next_path: str = "/me/") -> None:
    page.goto(next_path)
    assert "/me/login/" in page.url
    page.fill("#id_username", user.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("PORTAL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
