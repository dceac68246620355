"""The reference web client (devstack/web/) in real headless Chromium: two users chat.

Drives Debian's ``chromium`` (``make install`` puts it there) through
Playwright for Python; no browser is downloaded. Screenshots go to
test-artifacts/.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import requests

from chatsdk import dev_token_grant

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
WAIT_MS = 20_000


def test_page_and_module_are_served_with_a_strict_policy(stack):
    page = requests.get(f"{stack.origin}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<script type="module" src="/web/app.js">' in page.text
    js = requests.get(f"{stack.origin}/web/app.js", timeout=10)
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")
    for bad in ("/web/../gateway.py", "/web/%2e%2e/gateway.py", "/web/..%2fgateway.py", "/web/nope.js", "/web/"):
        resp = requests.get(f"{stack.origin}{bad}", timeout=10)
        assert resp.status_code in (403, 404) and "Local API Gateway" not in resp.text, bad


@pytest.fixture
async def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (make install installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def _sign_in(browser, stack, email: str):
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport={"width": 1200, "height": 720})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{stack.origin}/")
    await page.fill("#email", email)
    await page.click("#signin-form button")
    await expect(page.locator("#conn")).to_have_text(re.compile("^connected"), timeout=WAIT_MS)
    return ctx, page, errors


async def test_two_users_chat_in_the_browser(stack, browser):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    a_ctx, alice, a_errors = await _sign_in(browser, stack, "alice@acme.example")
    b_ctx, bob, b_errors = await _sign_in(browser, stack, "bob@acme.example")
    try:
        # alice starts a direct conversation with bob and writes
        await alice.fill("#newconv-emails", "bob@acme.example")
        await alice.click("#newconv button")
        await expect(alice.locator("#composer")).to_be_visible()
        conv = await alice.locator("#inbox li.open").get_attribute("data-conversation")
        await alice.fill("#composer-input", "Hello Bob, the quarterly numbers are in.")
        await alice.press("#composer-input", "Enter")
        await expect(alice.locator("#messages .msg.mine .body").last).to_have_text("Hello Bob, the quarterly numbers are in.")

        # bob's inbox shows it, unread, live; opening it shows the message and clears the count
        entry = bob.locator(f'#inbox li[data-conversation="{conv}"]')
        await expect(entry.locator(".unread")).to_have_text("1")
        await expect(entry.locator(".preview")).to_have_text("Hello Bob, the quarterly numbers are in.")
        await entry.click()
        await expect(bob.locator("#messages .msg .body").last).to_have_text("Hello Bob, the quarterly numbers are in.")
        await expect(entry.locator(".unread")).to_have_count(0)

        # bob answers; alice sees it live
        await bob.fill("#composer-input", "Hi Alice! Lunch at noon?")
        await bob.click("#composer button")
        await expect(alice.locator("#messages .msg:not(.mine) .body").last).to_have_text("Hi Alice! Lunch at noon?")

        # presence: bob sees alice online (the test stack's idle time is 5 s), then in a meeting once she says so
        alice_sub = dev_token_grant(stack.origin, "alice@acme.example").sub
        await expect(bob.locator(f'#conv-members [data-user="{alice_sub}"] .dot')).to_have_class(
            re.compile(r"^dot (available|away)$"))
        await alice.select_option("#my-status", "in_meeting")
        await expect(bob.locator(f'#conv-members [data-user="{alice_sub}"] .dot')).to_have_class("dot in_meeting")
        await expect(bob.locator(f'#roster li[data-user="{alice_sub}"]')).to_have_attribute("data-status", "in_meeting")

        # bob's network drops and his IdP is unreachable for a while: alice writes meanwhile
        async def refuse(route):
            await route.abort()

        await b_ctx.route("**/dev/idp/token", refuse)
        await bob.evaluate("window.chat.ws.close()")
        await expect(bob.locator("#conn")).to_contain_text("reconnecting")
        for text in ("Are you there?", "Sent while you were away"):
            await alice.fill("#composer-input", text)
            await alice.press("#composer-input", "Enter")
            await expect(alice.locator("#messages .msg.mine.pending")).to_have_count(0)
        assert await bob.evaluate("window.chat.connected") is False
        await b_ctx.unroute("**/dev/idp/token", refuse)
        await expect(bob.locator("#conn")).to_have_text("connected (reconnected)")
        await expect(bob.locator("#messages .msg .body").last).to_have_text("Sent while you were away")
        stats = await bob.evaluate("window.chat.stats")
        assert stats["reconnects"] == 1 and stats["replayed"] == 2 and stats["syncs"] == 1, stats
        bodies = await bob.locator("#messages .msg .body").all_text_contents()
        assert bodies == ["Hello Bob, the quarterly numbers are in.", "Hi Alice! Lunch at noon?", "Are you there?", "Sent while you were away"]

        # and live again after the reconnect
        await alice.fill("#composer-input", "Welcome back")
        await alice.press("#composer-input", "Enter")
        await expect(bob.locator("#messages .msg .body").last).to_have_text("Welcome back")

        await alice.screenshot(path=str(ARTIFACTS / "web-alice.png"))
        await bob.screenshot(path=str(ARTIFACTS / "web-bob.png"))
        assert a_errors == [] and b_errors == []
    finally:
        await a_ctx.close()
        await b_ctx.close()
