"""The reference web client (devstack/web/) in real headless Chromium: two users chat.

Drives Debian's ``chromium`` (``make install`` puts it there) through
Playwright for Python; no browser is downloaded. Screenshots go to
test-artifacts/.
"""
from __future__ import annotations

import re
import uuid
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


async def _sign_in(browser, stack, email: str, via: str = "shortcut"):
    """A signed-in page. ``via="shortcut"``: ``/?signin=shortcut``, the dev IdP's POST /dev/idp/token
    (a fresh token on every reconnect, which the reconnect test relies on); ``via="code"``: the page's
    own sign-in, the authorization code flow with PKCE through the tenant's IdP."""
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport={"width": 1200, "height": 720})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{stack.origin}/" + ("?signin=shortcut" if via == "shortcut" else ""))
    await page.fill("#email", email)
    await page.click("#signin-form button")
    if via == "code":
        # the dev IdP's page (found from the domain): "sign in as <login_hint>", one click
        await expect(page.locator("#who")).to_have_text(email, timeout=WAIT_MS)
        assert page.url.startswith(f"{stack.origin}/dev/idp/") and "/authorize?" in page.url, page.url
        await page.click("#approve")
    await expect(page.locator("#conn")).to_have_text(re.compile("^connected"), timeout=WAIT_MS)
    return ctx, page, errors


async def test_two_users_chat_in_the_browser(stack, browser):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    a_ctx, alice, a_errors = await _sign_in(browser, stack, "alice@acme.example")
    b_ctx, bob, b_errors = await _sign_in(browser, stack, "bob@acme.example")
    try:
        # alice knows only "bo": the people search lists Bob, a click starts the direct conversation
        await alice.locator("#people-search").press_sequentially("bo", delay=50)
        hit = alice.locator("#find-results li", has_text="Bob Builder")
        await expect(hit).to_be_visible()
        await expect(hit.locator(".email")).to_have_text("bob@acme.example")
        await expect(alice.locator("#find-results li", has_text="Alice Admin")).to_have_count(0)  # not herself
        await hit.click()
        await expect(alice.locator("#find-results")).to_be_hidden()
        await expect(alice.locator("#composer")).to_be_visible()
        await expect(alice.locator("#conv-name")).to_have_text("Bob Builder")
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
        # people are shown by their display names (users.get), not by id prefixes
        await expect(entry.locator(".name")).to_have_text("Alice Admin")
        await expect(bob.locator("#conv-name")).to_have_text("Alice Admin")
        await expect(bob.locator("#messages .msg .meta .sender").last).to_have_text("Alice Admin")

        # bob finds alice the same way: "ali" + Enter opens the conversation they already have
        await bob.locator("#people-search").press_sequentially("ali", delay=50)
        await expect(bob.locator("#find-results li", has_text="Alice Admin")).to_be_visible()
        await bob.press("#people-search", "Enter")
        await expect(bob.locator(f'#inbox li.open[data-conversation="{conv}"]')).to_have_count(1)

        # bob answers; alice sees it live
        await bob.fill("#composer-input", "Hi Alice! Lunch at noon?")
        await bob.click("#composer button[type=submit]")
        await expect(alice.locator("#messages .msg:not(.mine) .body").last).to_have_text("Hi Alice! Lunch at noon?")

        # presence: bob sees alice online (the test stack's idle time is 5 s), then in a meeting once she says so
        alice_sub = dev_token_grant(stack.origin, "alice@acme.example").sub
        await expect(bob.locator(f'#conv-members [data-user="{alice_sub}"] .dot')).to_have_class(
            re.compile(r"^dot (available|away)$"))
        await alice.select_option("#my-status", "in_meeting")
        await expect(bob.locator(f'#conv-members [data-user="{alice_sub}"] .dot')).to_have_class("dot in_meeting")
        await expect(bob.locator(f'#roster li[data-user="{alice_sub}"]')).to_have_attribute("data-status", "in_meeting")
        await expect(bob.locator(f'#conv-members [data-user="{alice_sub}"]')).to_have_text("Alice Admin")
        await expect(bob.locator(f'#roster li[data-user="{alice_sub}"] .who')).to_have_text("Alice Admin")

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


def _msg(page, text):
    """The timeline message whose body contains ``text``."""
    return page.locator("#messages .msg", has_text=text)


async def test_edit_delete_react_thread_and_receipts_in_the_browser(stack, browser):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    a_ctx, alice, a_errors = await _sign_in(browser, stack, "alice@acme.example")
    c_ctx, carol, c_errors = await _sign_in(browser, stack, "carol@acme.example")
    carol_sub = dev_token_grant(stack.origin, "carol@acme.example").sub
    try:
        await alice.fill("#newconv-emails", "carol@acme.example")
        await alice.click("#newconv button")
        await expect(alice.locator("#composer")).to_be_visible()
        conv = await alice.locator("#inbox li.open").get_attribute("data-conversation")
        assert await alice.locator("#convhead").get_attribute("data-external") == "false"
        await alice.fill("#composer-input", "Draft: revenue is up 5%")
        await alice.press("#composer-input", "Enter")
        await carol.locator(f'#inbox li[data-conversation="{conv}"]').click()
        await expect(_msg(carol, "Draft: revenue is up 5%")).to_have_count(1)

        # edit: inline editor on alice's own message; carol sees the new text, marked edited
        draft = _msg(alice, "Draft: revenue is up 5%")
        await draft.hover()
        await draft.locator('[data-action="edit"]').click()
        await alice.fill("#messages .edit-input", "Final: revenue is up 7%")
        await alice.press("#messages .edit-input", "Enter")
        final = _msg(carol, "Final: revenue is up 7%")
        await expect(final.locator(".edited")).to_have_count(1)
        await expect(_msg(carol, "Draft: revenue")).to_have_count(0)
        # carol cannot edit or delete alice's message
        await expect(final.locator('[data-action="edit"], [data-action="delete"]')).to_have_count(0)

        # react: carol adds 🎉, alice sees the count; carol's chip is marked as hers
        await final.hover()
        await final.locator('.pick[data-emoji="🎉"]').click()
        await expect(final.locator('.chip.mine[data-emoji="🎉"]')).to_have_text("🎉 1")
        await expect(_msg(alice, "Final: revenue").locator('.chip[data-emoji="🎉"]')).to_have_text("🎉 1")

        # thread: carol replies in the thread; alice sees the reply count and opens the thread
        await final.locator('[data-action="thread"]').click()
        await expect(carol.locator("#thread")).to_be_visible()
        await carol.fill("#thread-input", "Great news, congrats!")
        await carol.press("#thread-input", "Enter")
        await expect(carol.locator("#thread-messages .msg .body").last).to_have_text("Great news, congrats!")
        root = _msg(alice, "Final: revenue")
        await expect(root.locator(".replies")).to_have_text("💬 1 reply")
        await expect(_msg(alice, "Great news")).to_have_count(0)  # replies stay in the thread
        await root.locator(".replies").click()
        await expect(alice.locator("#thread-messages .msg .body").last).to_have_text("Great news, congrats!")
        await alice.click("#thread-close")
        await expect(alice.locator("#people")).to_be_visible()

        # read receipt: carol has the conversation open, so alice's next message is seen at once
        await alice.fill("#composer-input", "Board meeting moved to 3pm")
        await alice.press("#composer-input", "Enter")
        seen = _msg(alice, "Board meeting moved").locator(".receipt")
        await expect(seen).to_have_attribute("data-seen-by", carol_sub)
        await expect(seen).to_have_text("✓✓ Seen by Carol Chen")
        # typing shows the name too
        await carol.fill("#composer-input", "typing a rep")
        await expect(alice.locator("#typing")).to_have_text("Carol Chen is typing…")
        await carol.fill("#composer-input", "")

        # delete, with a confirmation; carol sees a tombstone
        await alice.fill("#composer-input", "oops, wrong conversation")
        await alice.press("#composer-input", "Enter")
        await expect(_msg(carol, "oops, wrong conversation")).to_have_count(1)
        oops = _msg(alice, "oops, wrong conversation")
        await oops.hover()
        await oops.locator('[data-action="delete"]').click()
        await alice.locator('#messages [data-action="confirm-delete"]').click()
        await expect(_msg(carol, "oops, wrong conversation")).to_have_count(0)
        await expect(carol.locator("#messages .msg.deleted .body").last).to_have_text("message deleted")
        await expect(alice.locator("#messages .msg.deleted")).to_have_count(1)

        await alice.screenshot(path=str(ARTIFACTS / "web-actions-alice.png"))
        await carol.screenshot(path=str(ARTIFACTS / "web-actions-carol.png"))
        assert a_errors == [] and c_errors == []
    finally:
        await a_ctx.close()
        await c_ctx.close()


def _admin(stack, email, method, path, **kw):
    token = dev_token_grant(stack.origin, email).access_token
    r = requests.request(method, f"{stack.origin}{path}", headers={"Authorization": f"Bearer {token}"},
                         timeout=15, **kw)
    assert r.status_code < 300, (method, path, r.status_code, r.text)
    return r.json()


@pytest.fixture
def acme_globex_connected(stack):
    """acme <-> globex connected and both policies open for the test; the previous state restored after."""
    alice, gina = "alice@acme.example", "gina@globex.example"
    before = {c["peerTenantId"]: c for c in _admin(stack, alice, "GET", "/admin/connections")["connections"]}
    policies = {who: _admin(stack, who, "GET", "/admin/policy")["policy"] for who in (alice, gina)}
    was_active = before.get("globex", {}).get("state") == "active"
    if not was_active:
        state = _admin(stack, alice, "POST", "/admin/connections", json={"tenantId": "globex"})["connection"]["state"]
        if state != "active":
            _admin(stack, gina, "POST", "/admin/connections/acme/accept")
    settings = {who: _admin(stack, who, "PUT", f"/admin/connections/{peer}",
                            json={"presence": True, "files": True, "whoMayStart": "everyone"})["connection"]
                for who, peer in ((alice, "globex"), (gina, "acme"))}
    for who in (alice, gina):
        _admin(stack, who, "PUT", "/admin/policy", json={"mode": "all"})
    try:
        yield
    finally:
        for who in (alice, gina):
            _admin(stack, who, "PUT", "/admin/policy", json=policies[who])
        if was_active:
            for who, peer in ((alice, "globex"), (gina, "acme")):
                prev = before["globex"] if who == alice else settings[who]
                _admin(stack, who, "PUT", f"/admin/connections/{peer}",
                       json={k: prev[k] for k in ("presence", "files", "whoMayStart")})
        else:
            _admin(stack, alice, "POST", "/admin/connections/globex/revoke")


async def test_two_connected_companies_chat_share_presence_and_a_file(stack, browser, acme_globex_connected, tmp_path):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    a_ctx, alice, a_errors = await _sign_in(browser, stack, "alice@acme.example")
    h_ctx, hank, h_errors = await _sign_in(browser, stack, "hank@globex.example")
    hank_sub = dev_token_grant(stack.origin, "hank@globex.example").sub
    try:
        # alice (acme) starts a direct conversation with hank (globex): marked external on both sides
        await alice.fill("#newconv-emails", "hank@globex.example")
        await alice.click("#newconv button")
        await expect(alice.locator("#composer")).to_be_visible()
        conv = await alice.locator("#inbox li.open").get_attribute("data-conversation")
        await expect(alice.locator("#convhead")).to_have_attribute("data-external", "true")
        await expect(alice.locator("#conv-banner")).to_contain_text("External conversation with people from globex")
        await expect(alice.locator(f'#inbox li[data-conversation="{conv}"] .badge.external')).to_have_text("external")
        await expect(alice.locator(f'#conv-members [data-user="{hank_sub}"]')).to_have_attribute("data-tenant", "globex")
        await expect(alice.locator("#composer-input")).to_have_attribute("placeholder", re.compile("shared with globex"))
        # the other company's people by name, with their company's tag
        hank_in_header = alice.locator(f'#conv-members [data-user="{hank_sub}"]')
        await expect(hank_in_header.locator(".who")).to_have_text("Hank Hill")
        await expect(hank_in_header.locator(".badge.external")).to_have_text("globex")
        await expect(alice.locator(f'#inbox li[data-conversation="{conv}"] .name')).to_have_text("Hank Hill (globex)")

        await alice.fill("#composer-input", "Hello Hank, Acme here. Shall we review the contract?")
        await alice.press("#composer-input", "Enter")
        entry = hank.locator(f'#inbox li[data-conversation="{conv}"]')
        await expect(entry).to_have_attribute("data-external", "true")
        await expect(entry.locator(".unread")).to_have_text("1")
        await entry.click()
        await expect(hank.locator("#convhead")).to_have_attribute("data-external", "true")
        await expect(hank.locator("#conv-banner")).to_contain_text("with people from acme")
        await expect(_msg(hank, "Shall we review the contract?").locator(".badge.external")).to_have_text("acme")
        await expect(_msg(hank, "Shall we review the contract?").locator(".sender")).to_have_text("Alice Admin")
        await hank.fill("#composer-input", "Sure, send it over.")
        await hank.press("#composer-input", "Enter")
        await expect(alice.locator("#messages .msg:not(.mine) .body").last).to_have_text("Sure, send it over.")

        # presence across companies: hank goes busy with a custom status; alice sees both
        await hank.select_option("#my-status", "busy")
        await hank.click("#custom-toggle")
        await hank.fill("#custom-emoji", "🚀")
        await hank.fill("#custom-text", "Launch day")
        await hank.select_option("#custom-expiry", "60")
        await hank.click("#custom-form button[type=submit]")
        await expect(hank.locator("#my-custom")).to_have_text("🚀 Launch day")
        await expect(alice.locator(f'#conv-members [data-user="{hank_sub}"] .dot')).to_have_class("dot busy")
        roster = alice.locator(f'#roster li[data-user="{hank_sub}"]')
        await expect(roster).to_have_attribute("data-status", "busy")
        await expect(roster).to_have_attribute("data-custom", "🚀 Launch day")
        await expect(roster.locator(".who")).to_contain_text("Hank Hill")

        # alice shares a file from the page: presigned POST straight to the S3 endpoint, scanned, announced
        content = b"Contract draft v3\n" + b"Clause 7: the parties agree.\n" * 40
        await alice.set_input_files("#file-input", files=[{"name": "contract-v3.txt", "mimeType": "text/plain",
                                                            "buffer": content}])
        notice = hank.locator("#messages .msg.filemsg", has_text="contract-v3.txt")
        await expect(notice.locator(".file-name")).to_have_text("📎 contract-v3.txt")
        await expect(alice.locator("#messages .msg.filemsg.mine", has_text="contract-v3.txt")).to_have_count(1)
        await expect(alice.locator("#messages .upload")).to_have_count(0)
        async with hank.expect_download() as info:
            await notice.locator("button.download").click()
        download = await info.value
        assert download.suggested_filename == "contract-v3.txt"
        saved = tmp_path / "downloaded.txt"
        await download.save_as(str(saved))
        assert saved.read_bytes() == content

        await alice.screenshot(path=str(ARTIFACTS / "web-external-alice.png"))
        await hank.screenshot(path=str(ARTIFACTS / "web-external-hank.png"))
        assert a_errors == [] and h_errors == []
    finally:
        await a_ctx.close()
        await h_ctx.close()


# --- sign-in through the tenant's own IdP: discovery, authorization code + PKCE (S256) -------------

def _pkce() -> tuple[str, str]:
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize(stack, email: str, challenge: str, tenant: str = "acme", redirect_uri: str | None = None,
               state: str = "st-1") -> requests.Response:
    """GET the dev IdP's sign-in page, then POST its form (what the "Sign in" button does)."""
    params = {"response_type": "code", "client_id": "enterprise-chat",
              "redirect_uri": redirect_uri or f"{stack.origin}/", "scope": "openid email profile",
              "state": state, "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256",
              "login_hint": email}
    url = f"{stack.origin}/dev/idp/{tenant}/authorize"
    page = requests.get(url, params=params, timeout=10, allow_redirects=False)
    assert page.status_code == 200 and 'id="approve"' in page.text and email in page.text, page.text
    return requests.post(url, data=params, timeout=10, allow_redirects=False)


def _code(resp: requests.Response, state: str = "st-1") -> str:
    from urllib.parse import parse_qs, urlparse

    assert resp.status_code == 302, resp.text
    q = parse_qs(urlparse(resp.headers["Location"]).query)
    assert q["state"] == [state], q
    return q["code"][0]


def _redeem(stack, code: str, verifier: str, redirect_uri: str | None = None, tenant: str = "acme"):
    return requests.post(f"{stack.origin}/dev/idp/{tenant}/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri or f"{stack.origin}/",
        "client_id": "enterprise-chat", "code_verifier": verifier})


def test_discovery_answers_a_domain_s_issuer_and_nothing_else(stack):
    resp = requests.get(f"{stack.origin}/auth/discovery", params={"domain": "ACME.example"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"domain": "acme.example", "issuer": f"{stack.origin}/dev/idp/acme",
                           "clientId": "enterprise-chat"}
    assert "max-age" in resp.headers["Cache-Control"]
    # unknown, malformed and missing domains: one answer, no tenant named
    misses = [requests.get(f"{stack.origin}/auth/discovery", params=p, timeout=10)
              for p in ({"domain": "nobody.example"}, {"domain": "not a domain"}, {})]
    assert {m.status_code for m in misses} == {404}
    assert len({m.text for m in misses}) == 1 and misses[0].json()["error"]["code"] == "not_found"
    conf = requests.get(f"{stack.origin}/dev/idp/acme/.well-known/openid-configuration", timeout=10).json()
    assert conf["authorization_endpoint"] == f"{stack.origin}/dev/idp/acme/authorize"
    assert conf["token_endpoint"] == f"{stack.origin}/dev/idp/acme/token"
    assert conf["code_challenge_methods_supported"] == ["S256"] and conf["response_types_supported"] == ["code"]


def test_dev_idp_code_flow_checks_verifier_redirect_uri_and_single_use(stack):
    verifier, challenge = _pkce()
    # a wrong verifier fails, and burns the code
    code = _code(_authorize(stack, "alice@acme.example", challenge))
    bad = _redeem(stack, code, _pkce()[0])
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant", bad.text
    assert _redeem(stack, code, verifier).json()["error"] == "invalid_grant"
    # a redirect_uri other than the authorization request's
    code = _code(_authorize(stack, "alice@acme.example", challenge))
    wrong = _redeem(stack, code, verifier, redirect_uri=f"{stack.origin}/?x=1")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", wrong.text
    # another tenant's token endpoint does not know the code
    code = _code(_authorize(stack, "alice@acme.example", challenge))
    assert _redeem(stack, code, verifier, tenant="globex").json()["error"] == "invalid_grant"
    # the right one: tokens the API accepts, and the code works once only
    code = _code(_authorize(stack, "alice@acme.example", challenge))
    ok = _redeem(stack, code, verifier)
    assert ok.status_code == 200 and ok.headers["Cache-Control"] == "no-store", ok.text
    tokens = ok.json()
    assert tokens["token_type"] == "Bearer" and tokens["id_token"] and tokens["access_token"]
    import jwt

    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["nonce"] == "n-1"
    convs = requests.get(f"{stack.origin}/conversations", timeout=10,
                         headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert convs.status_code == 200, convs.text
    again = _redeem(stack, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # an unregistered redirect_uri is refused on the IdP's page, never redirected to
    page = requests.get(f"{stack.origin}/dev/idp/acme/authorize", timeout=10, allow_redirects=False, params={
        "response_type": "code", "client_id": "enterprise-chat", "redirect_uri": "https://evil.example/",
        "scope": "openid", "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"})
    assert page.status_code == 400 and "Location" not in page.headers
    # no PKCE: back to the client with an error; a user of another tenant: access_denied
    plain = requests.get(f"{stack.origin}/dev/idp/acme/authorize", timeout=10, allow_redirects=False, params={
        "response_type": "code", "client_id": "enterprise-chat", "redirect_uri": f"{stack.origin}/",
        "scope": "openid", "state": "s"})
    assert plain.status_code == 302 and "error=invalid_request" in plain.headers["Location"]
    other = _authorize(stack, "gina@globex.example", challenge)
    assert other.status_code == 302 and "error=access_denied" in other.headers["Location"]
    # the shortcut for scripts stays
    assert requests.post(f"{stack.origin}/dev/idp/token", json={"email": "bob@acme.example"}, timeout=10).ok


def test_dev_idp_refuses_an_expired_or_reused_code(stack):
    """A code lives DEVSTACK_IDP_CODE_SECONDS (60 s), settable at run time; past it, or used once, it is
    ``400 {"error": "invalid_grant"}`` (RFC 6749 5.2), as local-stack.md and protocol.md say."""
    settings = f"{stack.origin}/dev/idp/settings"
    before = requests.get(settings, timeout=10).json()
    assert before == {"codeSeconds": 60}
    verifier, challenge = _pkce()
    try:
        # lifetime 0: every code is expired when it is made (no waiting in the test)
        assert requests.put(settings, json={"codeSeconds": 0}, timeout=10).json() == {"codeSeconds": 0}
        expired = _redeem(stack, _code(_authorize(stack, "alice@acme.example", challenge)), verifier)
        assert expired.status_code == 400 and expired.json() == {
            "error": "invalid_grant", "error_description": "unknown, expired or already used code"}, expired.text
        for bad in ({"codeSeconds": -1}, {"codeSeconds": 3601}, {"codeSeconds": "soon"}, {"codeSeconds": True}, {}):
            resp = requests.put(settings, json=bad, timeout=10)
            assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", (bad, resp.text)
        assert requests.get(settings, timeout=10).json() == {"codeSeconds": 0}  # the refusals changed nothing
    finally:
        assert requests.put(settings, json=before, timeout=10).json() == before
    # within its lifetime a code works once; the second use is refused the same way
    code = _code(_authorize(stack, "alice@acme.example", challenge))
    assert _redeem(stack, code, verifier).status_code == 200
    reused = _redeem(stack, code, verifier)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant", reused.text


async def test_sign_in_through_the_tenant_idp_in_the_browser(stack, browser):
    """The page's own sign-in: email -> /auth/discovery -> the issuer's discovery document -> its
    authorization endpoint (code + PKCE) -> back with code and state -> token endpoint -> connected."""
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    a_ctx, alice, a_errors = await _sign_in(browser, stack, "alice@acme.example", via="code")
    b_ctx, bob, b_errors = await _sign_in(browser, stack, "bob@acme.example")
    try:
        assert alice.url == f"{stack.origin}/"  # code and state are gone from the address bar
        assert await alice.evaluate("sessionStorage.getItem('chat.oidc.pending')") is None
        await expect(alice.locator("body")).to_have_attribute("data-tenant", "acme")  # learned from the directory
        await alice.fill("#newconv-emails", "bob@acme.example")
        await alice.press("#newconv-emails", "Enter")
        await expect(alice.locator("#composer")).to_be_visible()
        await alice.fill("#composer-input", "Signed in through my company's IdP")
        await alice.press("#composer-input", "Enter")
        await expect(alice.locator("#messages .msg.mine .body").last).to_have_text("Signed in through my company's IdP")
        await expect(bob.locator("#inbox li .preview", has_text="Signed in through my company's IdP")).to_have_count(1)
        # a reload stays signed in (the tab's sessionStorage), without another trip to the IdP
        await alice.reload()
        await expect(alice.locator("#conn")).to_have_text(re.compile("^connected"))
        assert alice.url == f"{stack.origin}/"
        # sign-out: back to the sign-in screen, the tab's tokens gone, and a reload stays signed out
        for page, url in ((alice, f"{stack.origin}/"), (bob, f"{stack.origin}/?signin=shortcut")):
            await page.click("#sign-out")
            await expect(page.locator("#signin")).to_be_visible()
            await expect(page.locator("#app")).to_be_hidden()
            assert page.url == url
            assert await page.evaluate("[sessionStorage.getItem('chat.oidc.session'), sessionStorage.getItem("
                                       "'chat.email'), window.chat]") == [None, None, None]
            await page.reload()
            await expect(page.locator("#signin")).to_be_visible()
            await expect(page.locator("#app")).to_be_hidden()
        # an answer the page did not ask for (a forged state) is refused
        await alice.evaluate("sessionStorage.clear()")
        await alice.goto(f"{stack.origin}/?code=forged&state=forged")
        await expect(alice.locator("#signin-error")).to_contain_text("does not match")
        # an email domain nobody signs in with
        await alice.fill("#email", "x@nobody.example")
        await alice.click("#signin-form button")
        await expect(alice.locator("#signin-error")).to_contain_text("No company signs in with this email domain")
        assert a_errors == [] and b_errors == []
    finally:
        await a_ctx.close()
        await b_ctx.close()


async def test_ask_the_experts_in_the_browser(stack, browser):
    """docs/experts.md on the page: earlier answers shown while typing, ask, the waves and who accepted;
    the expert's offer with Accept opens the conversation; a kept answer is browsed."""
    from playwright.async_api import expect

    from .test_federation import api

    expect.set_options(timeout=WAIT_MS)
    bob_id = dev_token_grant(stack.origin, "bob@acme.example").sub
    # the seeded company is shared by the suite, whose other tests have topics of their own: a unique name
    topic = f"Travel policy {uuid.uuid4().hex[:6]}"
    r = api(stack, "alice@acme.example", "POST", "/admin/experts/topics",
            json={"name": topic, "users": [bob_id], "timeoutSeconds": 300})
    assert r.status_code == 201, r.text
    a_ctx, alice, a_errors = await _sign_in(browser, stack, "alice@acme.example")
    b_ctx, bob, b_errors = await _sign_in(browser, stack, "bob@acme.example")
    try:
        for page in (alice, bob):
            await expect(page.locator("#expert-topic option", has_text=topic)).to_have_count(1)
            await page.select_option("#expert-topic", label=topic)
        await alice.fill("#ask-text", "May I fly business class to Tokyo?")
        await alice.click("#ask-form button[type=submit]")
        mine = alice.locator("#my-questions li")
        await expect(mine.locator(".status")).to_have_text("wave 1: 1 expert asked")
        offer = bob.locator("#expert-offers li", has_text="May I fly business class to Tokyo?")
        await expect(offer.locator(".by")).to_have_text(f"{topic} · asked by Alice Admin")
        await offer.locator("button.accept").click()
        await expect(bob.locator("#conv-name")).to_have_text(topic)
        await expect(mine.locator(".status")).to_have_text("accepted by Bob Builder")
        conv = await bob.locator("#inbox li.open").get_attribute("data-conversation")
        await bob.fill("#composer-input", "Yes: flights over 8 hours may be booked in business class.")
        await bob.press("#composer-input", "Enter")
        await expect(bob.locator("#messages .msg.mine .body").last).to_have_text(
            "Yes: flights over 8 hours may be booked in business class.")
        # the asker keeps the answer (SDK/API; the page shows answers), then anyone browses or finds it
        qid = await mine.get_attribute("data-question")
        from chalicelib.models import Message

        import asyncio
        import time

        seqs: list[int] = []
        deadline = time.monotonic() + 20
        while not seqs and time.monotonic() < deadline:  # the page shows it while the send is in flight
            seqs = [int(m.seq) for m in Message.query(conv, consistent_read=True) if (m.body or "").startswith("Yes")]
            if not seqs:
                await asyncio.sleep(0.2)
        await alice.evaluate("([qid, seqs]) => window.chat.call('expert.answered', {questionId: qid, messageSeqs: seqs})",
                             [qid, seqs])
        await bob.click("#answers-browse")
        await expect(bob.locator("#expert-answers li .a")).to_have_text(
            "Yes: flights over 8 hours may be booked in business class.")
        await alice.fill("#ask-text", "")
        await alice.locator("#ask-text").press_sequentially("business Tokyo", delay=20)
        await expect(alice.locator("#expert-answers li .q")).to_have_text("May I fly business class to Tokyo?")
        assert not a_errors and not b_errors, a_errors + b_errors
    finally:
        await a_ctx.close()
        await b_ctx.close()
