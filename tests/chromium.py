"""Headless Chromium for the page tests, driven over the DevTools protocol through a pipe.

    with Chromium() as browser:
        tab = browser.open("file:///tmp/explain.html")   # waits for the load event
        tab.evaluate("document.title")
        png = tab.screenshot()                            # the whole page, PNG bytes
        tab.errors, tab.requests                          # console errors, URLs asked for

`--remote-debugging-pipe` makes Chromium read protocol commands from fd 3 and write replies and
events to fd 4, each a JSON object ended by a NUL byte (what Puppeteer's `pipe: true` does), so
no port, no websocket and no third-party client are needed. Protocol reference:
chromedevtools.github.io/devtools-protocol (Target, Page, Runtime, Log, Network, Input).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

BINARY = os.environ.get("MINICNN_CHROMIUM", "/usr/bin/chromium")  # Debian's package
# What the brief asks for a quiet, offline, throwaway browser; --no-sandbox because CI runs as
# root, where Chromium's sandbox refuses to start.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]
TIMEOUT = 60.0  # seconds for any one reply; a cold start on a busy 2-core VM takes a few


class ChromiumError(RuntimeError):
    pass


def _high(fd: int) -> int:
    """fd moved to a number >= 10, so it cannot collide with the 3 and 4 the child needs."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless browser with a fresh profile folder, closed (and the folder removed) on exit."""

    def __init__(self, binary: str = BINARY, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="minicnn-chromium-")
        to_child, self._write = map(_high, os.pipe())  # we write commands; Chromium's fd 3
        self._read, from_child = map(_high, os.pipe())  # Chromium writes on its fd 4; we read

        def wire():  # in the child, before exec: the pipe ends become its fds 3 and 4
            os.dup2(to_child, 3)  # dup2's copies are inheritable; the originals are CLOEXEC
            os.dup2(from_child, 4)

        # close_fds=False keeps the child's new fds 3 and 4 (close_fds would shut every fd
        # above 2 after wire() ran); all other fds Python opened are non-inheritable anyway.
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=wire,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.size = (width, height)

    # --- the protocol ---------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str | None = None) -> dict:
        """The next event `method` (of `session`), waiting for it if it has not come yet."""
        while True:
            for k, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(k)
            self.events.append(self._receive())

    def _receive(self) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise ChromiumError(f"no reply from Chromium within {TIMEOUT:.0f} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise ChromiumError(f"Chromium closed the pipe (exit {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # --- pages ----------------------------------------------------------------------------------
    def open(self, url: str) -> Tab:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        tab = Tab(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            tab.send(f"{domain}.enable")
        width, height = self.size
        tab.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        tab.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired", session)
        return tab

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except (ChromiumError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()  # our own child, by its handle
                    self.proc.wait()
        finally:
            os.close(self._write)
            os.close(self._read)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Tab:
    """One page: evaluate script, move the mouse, take screenshots, read what it logged."""

    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-able), raising if the script threw."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse_move(self, x: float, y: float) -> None:
        """Move the pointer to viewport point (x, y) CSS px, as a real mouse would."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def screenshot(self, full_page: bool = True) -> bytes:
        """PNG bytes of the viewport, or of the whole page at 1 CSS px per pixel."""
        params = {"format": "png"}
        if full_page:
            width = self.evaluate("document.documentElement.scrollWidth")
            height = self.evaluate("document.documentElement.scrollHeight")
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            )
        return base64.b64decode(self.send("Page.captureScreenshot", params)["data"])

    def _mine(self) -> list[dict]:
        return [e for e in self.browser.events if e.get("sessionId") == self.session]

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and error-level log entries."""
        out = []
        for e in self._mine():
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(details.get("exception", {}).get("description") or details["text"])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in
                                    params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(params["entry"]["text"])
        return out

    @property
    def requests(self) -> list[str]:
        """Every URL the page asked the network stack for (data: URLs included)."""
        return [
            e["params"]["request"]["url"]
            for e in self._mine()
            if e.get("method") == "Network.requestWillBeSent"
        ]
