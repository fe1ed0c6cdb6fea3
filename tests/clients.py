"""Other people's readers and viewers, for tests of what we export: gltf-validator and splat-transform under
node, three.js (GLTFLoader) and GaussianSplats3D in headless Chromium. They are npm packages that
`bash tools/setup.sh --test` installs into tools/clients/node_modules; tests skip with a reason without them."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "tools/clients/node_modules"
PAGES = Path(__file__).resolve().parent / "pages"
NODE = shutil.which("node")


def installed(package: str) -> bool:
    """Whether node and the npm package are here."""
    return NODE is not None and (MODULES / package / "package.json").is_file()


def need(package: str) -> Path:
    """The installed package's folder; skips the test (with the reason) when node or the package is absent."""
    if NODE is None:
        pytest.skip("node is not installed")
    folder = MODULES / package
    if not (folder / "package.json").is_file():
        pytest.skip(f"npm package {package} not installed (bash tools/setup.sh --test installs it)")
    return folder


def validate_gltf(path: Path) -> dict:
    """Khronos gltf-validator's report of a .glb: {"errors", "warnings", "messages": [...]}."""
    need("gltf-validator")
    script = ("const v=require(process.argv[1]);const d=new Uint8Array(require('fs').readFileSync(process.argv[2]));"
              "v.validateBytes(d).then(r=>console.log(JSON.stringify({errors:r.issues.numErrors,"
              "warnings:r.issues.numWarnings,messages:r.issues.messages.filter(m=>m.severity<2)"
              ".map(m=>m.code+': '+m.message+' '+(m.pointer||''))})))")
    proc = subprocess.run([NODE, "-e", script, str(MODULES / "gltf-validator"), str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def splat_transform(src: Path, dst: Path) -> None:
    """PlayCanvas splat-transform reads `src` and writes `dst` (formats from the suffixes)."""
    cli = need("@playcanvas/splat-transform") / "bin/cli.mjs"
    proc = subprocess.run([NODE, str(cli), "-w", str(src), str(dst)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and dst.is_file(), proc.stdout + proc.stderr


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102 - no request lines in the test output
        pass


@contextlib.contextmanager
def serve(files: dict[str, Path]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (a free port) serving tests/pages, node_modules and `files` (name -> path)
    from one folder; yields its base URL. (ES modules do not load from file:// pages.)"""
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        for name, target in {**{p.name: p for p in PAGES.iterdir()}, "node_modules": MODULES, **files}.items():
            (Path(root) / name).symlink_to(Path(target).resolve())
        handler = functools.partial(_Quiet, directory=root)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


def page_url(base: str, page: str, **params) -> str:
    """`base/page?k=v...`, lists joined with commas."""
    query = {k: ",".join(f"{x:.6g}" for x in v) if isinstance(v, list | tuple) else v for k, v in params.items()}
    return f"{base}/{page}?{urllib.parse.urlencode(query)}"
