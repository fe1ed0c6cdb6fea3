"""Other people's readers and viewers, for the tests and the `exports` benchmark of what we export:
gltf-validator and splat-transform under node, three.js (GLTFLoader) and GaussianSplats3D in headless
Chromium (pages in bench/pages/). They are npm packages that `bash tools/setup.sh --test` installs into a
checkout's tools/clients/node_modules; without them (or node) `ClientMissing` says what is missing."""

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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "tools/clients/node_modules"
PAGES = Path(__file__).resolve().parent / "pages"
NODE = shutil.which("node")


class ClientMissing(RuntimeError):
    """node or an npm client package is not installed (the message says which and how to install it)."""


def installed(package: str) -> bool:
    """Whether node and the npm package are here."""
    return NODE is not None and (MODULES / package / "package.json").is_file()


def need(package: str) -> Path:
    """The installed package's folder; ClientMissing when node or the package is absent."""
    if NODE is None:
        raise ClientMissing("node is not installed")
    folder = MODULES / package
    if not (folder / "package.json").is_file():
        raise ClientMissing(f"npm package {package} not installed (bash tools/setup.sh --test installs it)")
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
    if proc.returncode != 0:
        raise RuntimeError(f"gltf-validator failed on {path}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def splat_transform(src: Path, dst: Path) -> None:
    """PlayCanvas splat-transform reads `src` and writes `dst` (formats from the suffixes)."""
    cli = need("@playcanvas/splat-transform") / "bin/cli.mjs"
    proc = subprocess.run([NODE, str(cli), "-w", str(src), str(dst)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not dst.is_file():
        raise RuntimeError(f"splat-transform {src.name} -> {dst.name} failed: {(proc.stdout + proc.stderr)[-500:]}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102 - no request lines in the test output
        pass


@contextlib.contextmanager
def serve(files: dict[str, Path]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (a free port) serving bench/pages, node_modules and `files` (name -> path)
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


def page_camera(cams, i: int, rot: np.ndarray) -> dict:
    """Page parameters of camera i of `cams` (OpenGL camera-to-world, centred principal point) in a file frame
    turned by `rot` (3x3) from our world: eye, target, up, fov (vertical degrees), w, h (pixels)."""
    c2w = cams.c2w[i].double().cpu().numpy()
    eye = c2w[:3, 3]
    fov = float(np.degrees(2 * np.arctan(cams.height / 2 / float(cams.fy[i]))))
    return {"eye": list(rot @ eye), "target": list(rot @ (eye - c2w[:3, 2])), "up": list(rot @ c2w[:3, 1]),
            "fov": fov, "w": int(cams.width), "h": int(cams.height)}


def show(page: str, file: Path, cams, i: int, rot: np.ndarray, out: Path) -> np.ndarray:
    """Open `file` in bench/pages/`page` (gltf.html: three.js; splats.html: GaussianSplats3D) in headless
    Chromium from camera i of `cams`, placed in the file's frame (turned by `rot` from our world); its canvas
    [H,W,3] in [0,1] (the screenshot is saved to `out`). RuntimeError if the page reports an error."""
    from .chromium import CHROMIUM, wait_for_page

    if CHROMIUM is None:
        raise ClientMissing("chromium is not installed (Debian: apt-get install chromium)")
    need("three")
    if page == "splats.html":
        need("@mkkellogg/gaussian-splats-3d")
    with serve({file.name: file}) as base:
        shot, word = wait_for_page(page_url(base, page, file=file.name, **page_camera(cams, i, rot)), out)
    if word != "ok":
        raise RuntimeError(f"{page} with {file.name}: {word}")
    return shot[: int(cams.height), : int(cams.width)]


def _cells(img: np.ndarray, n: int = 4) -> np.ndarray:
    """Mean colour of each cell of an n x n grid over the image [n, n, 3]."""
    h, w, _ = img.shape
    return img[: h - h % n, : w - w % n].reshape(n, h // n, n, w // n, 3).mean(axis=(1, 3))


def colour_errors(theirs: np.ndarray, ours: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How far another program's image of a view is from ours [H,W,3]: the largest difference of a 4x4 grid
    cell's mean colour (where the object is) and of the object's mean colour (over our mask [H,W])."""
    return {"cell": float(np.abs(_cells(theirs) - _cells(ours)).max()),
            "object": float(np.abs(theirs[mask].mean(0) - ours[mask].mean(0)).max())}
