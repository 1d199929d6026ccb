"""Screenshots of built book pages with headless Chromium.

Used to look at the HTML book without a desktop, for example after ``make book``::

    python tools/screenshot.py _build/html/book/intro.html _build/html/book/glossary.html \
        --out _build/screenshots --window-size 1400,4000

Each page is opened as a ``file://`` URL, or, with ``--serve DIR``, through a throw-away
``http.server`` on localhost that serves DIR (for pages whose scripts need http). The PNG is the
browser window, so a tall ``--window-size`` gives a full-page-ish picture.

Chromium comes from Debian: ``apt-get install -y chromium chromium-driver fonts-noto-cjk`` (the
font draws the glossary's Chinese terms, which are empty boxes without it). Each run uses a
fresh profile in a temporary folder and turns off everything that would reach the network on
its own. ``--offline`` also makes every host name fail to resolve (localhost excepted), so the
picture shows what a reader without internet sees: the book serves its own MathJax
(``_static/mathjax/``, from the ``sphinx-mathjax-offline`` extension), so its math renders
offline; anything a page still loads from a CDN (Thebe, the interactive widgets) does not.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

# With --offline: no host name resolves (a CDN is unreachable); localhost, for --serve, still does.
# The rule matches IP literals too, so 127.0.0.1 and [::1] need their own EXCLUDE (without them a
# page served on 127.0.0.1, such as TensorBoard's, fails with ERR_NAME_NOT_RESOLVED).
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE [::1]",)


def find_chromium(name: str | None = None) -> str:
    """The Chromium executable: ``name`` if given, else the first of :data:`CHROMIUM_NAMES` on PATH."""
    for candidate in (name,) if name else CHROMIUM_NAMES:
        path = shutil.which(candidate)
        if path:
            return path
    raise FileNotFoundError(
        f"no Chromium found (looked for {', '.join((name,) if name else CHROMIUM_NAMES)}); "
        "install it with: apt-get update && apt-get install -y chromium chromium-driver fonts-noto-cjk"
    )


def parse_window_size(text: str) -> tuple[int, int]:
    """``"1400,2000"`` or ``"1400x2000"`` -> ``(1400, 2000)``."""
    parts = text.replace("x", ",").split(",")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"window size must be WIDTH,HEIGHT, got {text!r}") from None
    if not (100 <= width <= 10000 and 100 <= height <= 30000):
        raise argparse.ArgumentTypeError(f"window size {width}x{height} is out of range")
    return width, height


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on a free localhost port for the duration of the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def screenshot(
    url: str,
    out: Path,
    *,
    window_size: tuple[int, int] = (1400, 2000),
    chromium: str | None = None,
    wait_ms: int = 3000,
    timeout: float = 120,
    offline: bool = False,
) -> Path:
    """Save a PNG of ``url`` to ``out``, ``wait_ms`` of page time after it loads.

    ``offline=True`` lets no host name resolve, as for a reader without internet.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    width, height = window_size
    with tempfile.TemporaryDirectory(prefix="aigc-lab-chromium-") as profile:
        command = [
            find_chromium(chromium),
            *CHROMIUM_FLAGS,
            *(OFFLINE_FLAGS if offline else ()),
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={out.resolve()}",
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(
            f"Chromium wrote no screenshot of {url} (exit code {result.returncode}):\n{result.stderr[-2000:]}"
        )
    return out


def output_names(pages: Sequence[Path]) -> list[str]:
    """PNG file names for ``pages``: the page's stem, with its folder prepended when stems collide."""
    stems = [p.stem for p in pages]
    return [
        f"{p.parent.name}_{p.stem}.png" if stems.count(p.stem) > 1 else f"{p.stem}.png" for p in pages
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Take screenshots of built HTML pages with headless Chromium.",
        epilog="example: python tools/screenshot.py _build/html/index.html --out _build/screenshots",
    )
    parser.add_argument("pages", nargs="+", type=Path, help="HTML files to photograph")
    parser.add_argument("--out", type=Path, default=Path("_build/screenshots"), help="folder for the PNGs")
    parser.add_argument(
        "--window-size",
        type=parse_window_size,
        default=(1400, 2000),
        metavar="W,H",
        help="browser window in pixels; a tall one captures more of the page (default 1400,2000)",
    )
    parser.add_argument(
        "--serve",
        type=Path,
        metavar="DIR",
        help="open the pages through a localhost http.server rooted at DIR instead of file://",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="let no host name resolve (localhost excepted), to see the page as a reader without internet",
    )
    parser.add_argument("--chromium", help="Chromium executable (default: the first found on PATH)")
    parser.add_argument(
        "--wait-ms", type=int, default=3000, help="page time to let scripts run before the shot (default 3000)"
    )
    args = parser.parse_args(argv)

    pages = [p.resolve() for p in args.pages]
    missing = [str(p) for p in pages if not p.is_file()]
    if missing:
        parser.error(f"no such page: {', '.join(missing)} (build the book first: make book)")
    root = args.serve.resolve() if args.serve else None
    if root is not None:
        outside = [str(p) for p in pages if not p.is_relative_to(root)]
        if outside:
            parser.error(f"pages outside --serve {root}: {', '.join(outside)}")

    with serve(root) if root is not None else _no_server() as base:
        for page, name in zip(pages, output_names(pages)):
            url = base + page.relative_to(root).as_posix() if root is not None else page.as_uri()
            png = screenshot(
                url,
                args.out / name,
                window_size=args.window_size,
                chromium=args.chromium,
                wait_ms=args.wait_ms,
                offline=args.offline,
            )
            print(f"{png}  <-  {url}")
    return 0


@contextmanager
def _no_server() -> Iterator[str]:
    yield ""


if __name__ == "__main__":
    sys.exit(main())
