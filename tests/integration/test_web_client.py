"""The web client in a real headless Chromium against a real local cluster.

Debian's `chromium`, driven by Playwright (`.ci/run` installs both). Skips
when the browser is missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets
from support.client import ChatClient
from support.cluster import LocalCluster
from support.wait import wait_for

playwright_api = pytest.importorskip("playwright.async_api")

DEADLINE = 30.0
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 780}


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install chromium), and CI=true")
        pytest.skip("chromium is not installed")
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    async with playwright_api.async_playwright() as pw:
        # the sandbox needs user namespaces the test runner (root) may not have
        launched = await pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@asynccontextmanager
async def page_for(browser: Any, url: str, user: str, viewport: dict[str, int] = WIDE):
    """A signed-in page of its own (own storage) for one user."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    await page.goto(url)
    await page.fill("#signin-user", user)
    await page.click("#signin-form button[type=submit]")
    await online(page)
    try:
        yield page
    finally:
        await context.close()
        assert errors == [], errors


def http_url(cluster: LocalCluster) -> str:
    return cluster.gateway_url().replace("ws://", "http://").removesuffix("/ws") + "/"


async def online(page: Any) -> None:
    await page.wait_for_selector("#status[data-state=online]", timeout=DEADLINE * 1000)


async def create(page: Any, room: str) -> None:
    await page.fill("#create-room", room)
    await page.click("#create-form button")
    await page.wait_for_selector(f"#room-title:text('# {room}')", timeout=DEADLINE * 1000)


async def join_from_list(page: Any, room: str) -> None:
    await page.click("#refresh-rooms")
    await page.click(f"#all-rooms button[data-room='{room}']", timeout=DEADLINE * 1000)
    await page.wait_for_selector(f"#room-title:text('# {room}')", timeout=DEADLINE * 1000)


async def say(page: Any, text: str) -> None:
    await page.fill("#send-text", text)
    await page.press("#send-text", "Enter")


async def shown(page: Any) -> list[tuple[int, str, str]]:
    """(seq, from, text) of every message the page shows, in page order."""
    return [
        tuple(item)
        for item in await page.eval_on_selector_all(
            "#entries li.msg",
            "items => items.map(li => [Number(li.dataset.seq),"
            " li.querySelector('.from').textContent, li.querySelector('.text').textContent])",
        )
    ]


async def wait_texts(page: Any, texts: list[str]) -> list[tuple[int, str, str]]:
    async def check() -> list[tuple[int, str, str]] | None:
        got = await shown(page)
        return got if all(t in [m[2] for m in got] for t in texts) else None

    return await wait_for(check, DEADLINE, message=f"page shows {texts}")


def contiguous(messages: list[tuple[int, str, str]]) -> None:
    seqs = [m[0] for m in messages]
    assert seqs == sorted(set(seqs)), f"duplicates or disorder: {seqs}"


async def test_two_browsers_chat_and_see_one_order(browser: Any, cluster: LocalCluster) -> None:
    url = http_url(cluster)
    async with page_for(browser, url, "alice") as alice, page_for(browser, url, "bob") as bob:
        await create(alice, "lobby")
        await join_from_list(bob, "lobby")
        sent = []
        for i in range(5):
            sent += [f"a{i}", f"b{i}"]
            await say(alice, f"a{i}")
            await say(bob, f"b{i}")
        seen_alice = await wait_texts(alice, sent)
        seen_bob = await wait_texts(bob, sent)
        assert [m for m in seen_alice if m[2] in sent] == [m for m in seen_bob if m[2] in sent]
        contiguous(seen_alice)
        # own messages are marked; the other's are not
        own = await alice.eval_on_selector_all(
            "#entries li.msg.own .text", "xs => xs.map(x => x.textContent)"
        )
        assert set(own) == {f"a{i}" for i in range(5)}
        # bob joined: alice sees the system line and bob in the member list
        await alice.wait_for_selector("#entries li.system:text('bob joined the room')")
        await alice.wait_for_selector("#member-list li:text('bob')")


async def test_reload_resumes_without_gap_or_duplicate(browser: Any, cluster: LocalCluster) -> None:
    url = http_url(cluster)
    carol = await ChatClient.connect(cluster.gateway_url(), "carol")
    try:
        async with page_for(browser, url, "alice") as alice:
            await create(alice, "reload")
            await carol.join("reload")
            for i in range(3):
                await carol.send("reload", f"before-{i}")
            await wait_texts(alice, ["before-2"])
            navigation = alice.reload()
            for i in range(3):
                await carol.send("reload", f"during-{i}")
            await navigation
            await online(alice)
            await carol.send("reload", "after")
            messages = await wait_texts(
                alice,
                [*(f"before-{i}" for i in range(3)), *(f"during-{i}" for i in range(3)), "after"],
            )
            contiguous(messages)
            texts = [m[2] for m in messages]
            assert len(texts) == len(set(texts))
    finally:
        await carol.close()


async def test_the_browser_rides_out_a_gateway_restart(browser: Any, cluster: LocalCluster) -> None:
    url = http_url(cluster)
    async with page_for(browser, url, "alice") as alice:
        await create(alice, "restart")
        await say(alice, "before the restart")
        await wait_texts(alice, ["before the restart"])
        cluster.kill_gateway(0)
        await alice.wait_for_selector("#status[data-state=reconnecting]", timeout=DEADLINE * 1000)
        await cluster.restart_gateway(0)
        await online(alice)  # by itself, with backoff
        dave = await ChatClient.connect(cluster.gateway_url(), "dave")
        try:
            await dave.join("restart")
            await dave.send("restart", "after the restart")
        finally:
            await dave.close()
        await say(alice, "me again")
        messages = await wait_texts(alice, ["before the restart", "after the restart", "me again"])
        contiguous(messages)


async def test_the_owner_deletes_a_room_and_the_other_browser_is_told(
    browser: Any, cluster: LocalCluster
) -> None:
    url = http_url(cluster)
    async with page_for(browser, url, "alice") as alice, page_for(browser, url, "bob") as bob:
        await create(alice, "doomed")
        await join_from_list(bob, "doomed")
        assert await bob.is_hidden("#delete")  # only the owner may
        await alice.click("#delete")
        await alice.wait_for_selector("#confirm[open]")
        await alice.keyboard.press("Escape")  # Esc closes the dialog: nothing happens
        await alice.wait_for_selector("#confirm", state="hidden")
        assert await alice.is_visible("#room-view")
        await alice.click("#delete")
        await alice.click("#confirm-ok")
        await alice.wait_for_selector("#room-view", state="hidden")
        await bob.wait_for_selector("#notice:text('was deleted')", timeout=DEADLINE * 1000)
        assert await bob.is_hidden("#room-view")
        assert await bob.locator("#open-rooms button[data-room='doomed']").count() == 0


async def test_markup_in_a_message_is_shown_as_text(browser: Any, cluster: LocalCluster) -> None:
    url = http_url(cluster)
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    async with page_for(browser, url, "alice") as alice:
        await create(alice, "xss")
        await say(alice, hostile)
        messages = await wait_texts(alice, [hostile])
        assert messages[-1][2] == hostile
        assert await alice.locator("#entries img, #entries script").count() == 0
        assert await alice.evaluate("window.__pwned") is None


async def test_scroll_back_loads_older_history(browser: Any, make_cluster: Any) -> None:
    """A room with more than a join's backlog: scrolling to the top fetches the rest."""
    # bob sends 121 frames as fast as they are acknowledged: over the
    # gateway's default rate (50/s, bursts of 100) once acks take < 3.5 ms
    cluster = await make_cluster(extra_env={"PARLEY_RATE_LIMIT": "10000"})
    url = http_url(cluster)
    bob = await ChatClient.connect(cluster.gateway_url(), "bob")
    try:
        await bob.create("long")
        for i in range(120):
            await bob.send("long", f"line {i:03}")
        async with page_for(browser, url, "alice") as alice:
            await join_from_list(alice, "long")
            first = await wait_texts(alice, ["line 119"])
            assert "line 000" not in [m[2] for m in first]  # only the latest at first
            for _ in range(10):
                await alice.eval_on_selector("#log", "log => { log.scrollTop = 0; }")
                await alice.dispatch_event("#log", "scroll")
                if "line 000" in [m[2] for m in await shown(alice)]:
                    break
                await alice.wait_for_timeout(300)  # the next page is asked on the next scroll
            messages = await wait_texts(alice, ["line 000"])
            contiguous(messages)
            assert [m[2] for m in messages] == [f"line {i:03}" for i in range(120)]
            await alice.wait_for_selector("#log-top:text('start of the room')")
    finally:
        await bob.close()


async def test_unread_counts_for_rooms_not_in_view(browser: Any, cluster: LocalCluster) -> None:
    url = http_url(cluster)
    bob = await ChatClient.connect(cluster.gateway_url(), "bob")
    try:
        await bob.create("quiet")
        await bob.create("busy")
        async with page_for(browser, url, "alice") as alice:
            await join_from_list(alice, "busy")
            await join_from_list(alice, "quiet")  # in view: quiet
            for i in range(3):
                await bob.send("busy", f"news {i}")
            badge = alice.locator("#open-rooms li:has(button[data-room='busy']) .badge")
            await badge.filter(has_text="3").wait_for(timeout=DEADLINE * 1000)
            await alice.click("#open-rooms button[data-room='busy']")
            await wait_texts(alice, ["news 2"])
            assert await badge.count() == 0  # read
    finally:
        await bob.close()


async def test_sign_in_with_a_token_when_auth_is_on(browser: Any, make_cluster: Any) -> None:
    import jwt

    secret = "web-client-test-secret-of-32-bytes!"
    cluster = await make_cluster(jwt_secret=secret)
    token = jwt.encode({"sub": "erin"}, secret, algorithm="HS256")
    context = await browser.new_context(viewport=WIDE)
    try:
        page = await context.new_page()
        await page.goto(http_url(cluster))
        await page.wait_for_selector("#signin-token", state="visible")
        assert await page.is_hidden("#signin-user")
        await page.fill("#signin-token", token)
        await page.click("#signin-form button[type=submit]")
        await online(page)
        assert await page.text_content("#who") == "signed in as erin"
        await create(page, "secure")
        await say(page, "token works")
        (message,) = await wait_texts(page, ["token works"])
        assert message[1] == "erin"
    finally:
        await context.close()


async def test_the_page_renews_its_token_and_asks_again_once_expired(
    browser: Any, make_cluster: Any
) -> None:
    """A token near its end brings up the renew bar; a fresh token pasted
    there keeps the same connection past the old expiry. Left to expire, the
    gateway closes with 4001 and the page asks for a new token."""
    import time

    import jwt

    secret = "web-client-renew-secret-of-32-bytes"
    cluster = await make_cluster(jwt_secret=secret, gateway_args=["--jwt-leeway", "0"])

    def token(lifetime: float) -> str:
        claims = {"sub": "fay", "exp": int(time.time() + lifetime)}
        return jwt.encode(claims, secret, algorithm="HS256")

    context = await browser.new_context(viewport=WIDE)
    try:
        page = await context.new_page()
        await page.goto(http_url(cluster))
        await page.wait_for_selector("#signin-token", state="visible")
        first = token(10)
        await page.fill("#signin-token", first)
        await page.click("#signin-form button[type=submit]")
        await online(page)
        await create(page, "renewals")
        # under a minute left: the renew bar is up at once
        await page.wait_for_selector("#renew-form", state="visible")
        await page.fill("#renew-token", token(3600))
        await page.click("#renew-form button[type=submit]")
        await page.wait_for_selector("#renew-form", state="hidden")
        first_exp = jwt.decode(first, options={"verify_signature": False})["exp"]
        await wait_for(lambda: time.time() > first_exp + 1.5, 15, message="past the first expiry")
        await say(page, "still here")
        await wait_texts(page, ["still here"])
        assert await page.is_hidden("#signin-view")

        # a second sign-in, in a browser of its own, left to expire
        other = await browser.new_context(viewport=WIDE)
        try:
            page2 = await other.new_page()
            await page2.goto(http_url(cluster))
            await page2.wait_for_selector("#signin-token", state="visible")
            await page2.fill("#signin-token", token(3))
            await page2.click("#signin-form button[type=submit]")
            await online(page2)
            await page2.wait_for_selector("#signin-view", state="visible", timeout=20_000)
            assert "expired" in (await page2.text_content("#signin-error") or "")
        finally:
            await other.close()
    finally:
        await context.close()


async def test_pages_carry_a_strict_policy(cluster: LocalCluster) -> None:
    """The page, its script and its style come with CSP, nosniff and no referrer."""
    import urllib.request

    def fetch(url: str) -> tuple[Any, str]:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.headers, response.read().decode()

    base = http_url(cluster)
    for path, kind in (("", "text/html"), ("static/app.js", "text/javascript")):
        headers, body = await asyncio.to_thread(fetch, base + path)
        assert headers["Content-Type"].startswith(kind)
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "http://" not in body.replace("http://www.w3.org", "")  # nothing external


async def test_a_foreign_origin_is_refused(cluster: LocalCluster) -> None:
    """Another site's page may not open a socket; the page's own origin, and
    clients that send no Origin (wscat, the terminal client), may."""
    ws = cluster.gateway_url() + "?user=alice"
    own = http_url(cluster).rstrip("/")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws, origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(ws, origin=own) as conn:  # type: ignore[arg-type]
        await conn.send('{"type":"ping","id":"p"}')
        assert "pong" in await conn.recv()
    async with websockets.connect(ws) as conn:
        await conn.send('{"type":"ping","id":"p"}')
        assert "pong" in await conn.recv()


async def test_screenshots(browser: Any, cluster: LocalCluster, tmp_path: Path) -> None:
    """The rooms and chat views, wide and narrow (into docs/screenshots with
    PARLEY_SCREENSHOTS=1, which is how the README's pictures are made)."""
    out = SCREENSHOTS if os.environ.get("PARLEY_SCREENSHOTS") else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    url = http_url(cluster)
    others = {u: await ChatClient.connect(cluster.gateway_url(), u) for u in ("bob", "carol")}
    try:
        await others["bob"].create("general")
        await others["carol"].create("ops")
        await others["carol"].join("general")
        morning = await others["bob"].send("general", "morning all — the deploy went out at 9")
        await others["carol"].send("general", "nice! any alerts?")
        edit = {"type": "edit", "room": "general", "seq": morning["seq"]}
        await others["bob"].request({**edit, "text": "morning all — the deploy went out at 09:00"})
        for user in ("bob", "carol"):
            react = {"type": "react", "room": "general", "seq": morning["seq"], "emoji": "🎉"}
            await others[user].request(react)
        for name, viewport in (("wide", WIDE), ("narrow", NARROW)):
            async with page_for(browser, url, "alice", viewport) as alice:
                await alice.click("#refresh-rooms")
                await alice.wait_for_selector("#all-rooms button[data-room='ops']")
                await alice.screenshot(path=str(out / f"web-rooms-{name}.png"))
                if name == "wide":
                    await join_from_list(alice, "ops")
                await join_from_list(alice, "general")
                await say(alice, "great work everyone")
                await others["bob"].send("general", "thanks alice!")
                await wait_texts(alice, ["great work everyone", "thanks alice!"])
                if name == "wide":  # (typing is passed on once per 2 s)
                    await others["carol"].send_frame({"type": "typing", "room": "general"})
                    await alice.wait_for_selector("#typing:text('carol is typing')")
                await alice.screenshot(path=str(out / f"web-chat-{name}.png"))
    finally:
        for conn in others.values():
            await conn.close()
    for name in ("wide", "narrow"):
        for view in ("rooms", "chat"):
            assert (out / f"web-{view}-{name}.png").stat().st_size > 5_000


async def test_edit_react_typing_and_a_direct_message(browser: Any, cluster: LocalCluster) -> None:
    url = http_url(cluster)
    async with page_for(browser, url, "alice") as alice, page_for(browser, url, "bob") as bob:
        await create(alice, "lobby")
        await join_from_list(bob, "lobby")
        await say(alice, "helo")
        await wait_texts(bob, ["helo"])
        # ↑ in the empty composer edits the last own message
        await alice.press("#send-text", "ArrowUp")
        assert await alice.input_value("#send-text") == "helo"
        await alice.fill("#send-text", "hello")
        await alice.press("#send-text", "Enter")
        for page in (alice, bob):
            await wait_texts(page, ["hello (edited)"])
        await say(bob, "/react 👍")
        await alice.wait_for_selector(".reactions span:text('👍 1')", timeout=DEADLINE * 1000)
        # typing shows on the other page only
        await bob.fill("#send-text", "typing away")
        await alice.wait_for_selector("#typing:text('bob is typing')", timeout=DEADLINE * 1000)
        assert await bob.text_content("#typing") == ""
        await bob.fill("#send-text", "")
        # a direct-message room, from both sides
        await say(alice, "/dm bob")
        await alice.wait_for_selector("#room-title:text('@ bob')", timeout=DEADLINE * 1000)
        await say(alice, "just us")
        await say(bob, "/dm alice")
        await bob.wait_for_selector("#room-title:text('@ alice')", timeout=DEADLINE * 1000)
        await wait_texts(bob, ["just us"])
