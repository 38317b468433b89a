"""Load an HTML page in a real headless Chromium and say what went wrong: console errors, uncaught exceptions,
failed loads, and images that did not show (``naturalWidth == 0``).

    from html_check import check_html_page, chromium_path
    problems = check_html_page("report/index.html")   # [] when the page is clean

Talks to the browser over the DevTools protocol (a WebSocket, spoken here with the standard library), so no
driver package is needed. ``chromium_path()`` is None when no Chromium is installed; the ``html_page_check``
fixture in ``tests/conftest.py`` skips then, with a reason (fails under CI=true: ``.ci/run`` installs it).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

#: Flags of every run: no sandbox (root in CI), no GPU, nothing fetched from the network by the browser itself.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--remote-debugging-port=0", "--remote-allow-origins=*")
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The Chromium executable (``$CHROMIUM`` or the first of :data:`NAMES` on PATH), or None."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    return next((p for p in (shutil.which(n) for n in NAMES) if p), None)


class _Socket:
    """The least of a WebSocket client: text frames, masked as a client must."""

    def __init__(self, url: str, timeout: float):
        host_port, path = url.removeprefix("ws://").split("/", 1)
        host, port = host_port.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:200]!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def send(self, obj) -> None:
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> dict:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if b0 & 0x0F == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if b0 & 0x0F in (0x9, 0xA):  # ping / pong
                continue
            message += payload
            if b0 & 0x80:
                return json.loads(message)

    def close(self) -> None:
        self.sock.close()


_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({src: i.getAttribute('src'),
  complete: i.complete, w: i.naturalWidth})))"""


def check_html_page(path: str | os.PathLike, timeout: float = 30.0, chromium: str | None = None) -> list[str]:
    """Open ``path`` in headless Chromium; return one line per problem: a console error or warning of level
    error, an uncaught exception, a resource that failed to load, an image with ``naturalWidth == 0``, or a
    page without a single image when it has ``<img>`` tags that never completed. An empty list: the page is
    clean. Raises RuntimeError when the browser cannot be started or the page does not load in ``timeout``."""
    exe = chromium or chromium_path()
    if exe is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    page = Path(path).resolve()
    if not page.is_file():
        raise FileNotFoundError(page)
    profile = tempfile.mkdtemp(prefix="html-check-")
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ws = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start (exit {proc.poll()})")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            target = next(t for t in json.load(r) if t.get("type") == "page")
        ws = _Socket(target["webSocketDebuggerUrl"], timeout)
        problems: list[str] = []
        ids = iter(range(1, 1 << 30))
        pending: dict[int, dict] = {}

        def call(method, params=None, wait=True):
            i = next(ids)
            ws.send({"id": i, "method": method, "params": params or {}})
            while wait and i not in pending:
                handle(ws.recv())
            return pending.pop(i, None)

        loaded = {"done": False}

        def handle(msg):
            if "id" in msg:
                pending[msg["id"]] = msg
                return
            m, p = msg.get("method"), msg.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                problems.append(f"console.{p['type']}: {text}")
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                problems.append(f"uncaught exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                problems.append(f"console error ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                problems.append(f"load failed: {p.get('errorText')} (request {p.get('requestId')})")
            elif m == "Page.loadEventFired":
                loaded["done"] = True

        for domain in ("Page", "Runtime", "Log", "Network"):
            call(f"{domain}.enable")
        call("Page.navigate", {"url": page.as_uri()})
        while not loaded["done"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{page}: no load event within {timeout} s")
            handle(ws.recv())
        res = call("Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True})
        for img in json.loads(res["result"]["result"]["value"]):
            if not img["complete"] or img["w"] == 0:
                problems.append(f"image does not show: {img['src']} (naturalWidth {img['w']})")
        return problems
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
