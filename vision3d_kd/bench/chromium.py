"""Headless Chromium driven over the DevTools protocol, for tests and benchmarks that must see a page:
screenshots are polled until the page shows what the caller waits for (or a deadline passes), never taken
after a fixed delay — a page that loads its scene over a websocket is ready when it is ready, not after N
seconds. Needs the `websockets` package (viser's dependency)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--remote-allow-origins=*",
         "--no-first-run", "--window-size=1024,768"]


class Page:
    """One Chromium page: `shot()` returns its screenshot [H,W,3] in [0,1]."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id = ws, 0

    def call(self, method: str, timeout: float = 60.0, **params) -> dict:
        """Send one DevTools command and return its result (events arriving meanwhile are dropped)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(deadline - time.time(), 0.1)))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def shot(self) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float32) / 255.0


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float) -> int:
    """The port Chromium chose (it writes it to DevToolsActivePort in its profile folder)."""
    deadline = time.time() + timeout
    marker = profile / "DevToolsActivePort"
    while time.time() < deadline:
        if marker.is_file() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


@contextlib.contextmanager
def open_page(url: str) -> Iterator[Page]:
    """Headless Chromium showing `url` in a 1024x768 viewport (scale 1), closed on exit."""
    from websockets.sync.client import connect

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = _devtools_port(Path(profile), proc, 60.0)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                target = next(t for t in json.load(r) if t["type"] == "page")
            with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
                page = Page(ws)
                page.call("Emulation.setDeviceMetricsOverride", width=1024, height=768, deviceScaleFactor=1,
                          mobile=False)
                yield page
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _save(img: np.ndarray, out: Path) -> None:
    Image.fromarray((img * 255).round().astype(np.uint8)).save(out)


def wait_for(url: str, ready: Callable[[np.ndarray], bool], out: Path, timeout: float = 180.0,
             every: float = 0.5) -> np.ndarray:
    """Load `url` and screenshot it every `every` s until `ready(shot)` holds or `timeout` s pass; the last
    shot is saved to `out` (for a failing test's reader) and returned."""
    with open_page(url) as page:
        deadline = time.time() + timeout
        img = page.shot()
        while not ready(img) and time.time() < deadline:
            time.sleep(every)
            img = page.shot()
    _save(img, out)
    return img


def wait_for_page(url: str, out: Path, timeout: float = 180.0, every: float = 0.25) -> tuple[np.ndarray, str]:
    """Load a page that sets `window.done` to "ok" once it has drawn what the test looks at (or to an error
    message), poll it every `every` s, then screenshot it: (shot [768,1024,3] in [0,1], the page's word).
    Saved to `out`; the word is "timeout" if the page never set it within `timeout` s."""
    with open_page(url) as page:
        deadline, word = time.time() + timeout, None
        while word is None and time.time() < deadline:
            time.sleep(every)
            res = page.call("Runtime.evaluate", expression="window.done || null", returnByValue=True)
            word = res["result"].get("value")
        img = page.shot()
    _save(img, out)
    return img, word or "timeout"
