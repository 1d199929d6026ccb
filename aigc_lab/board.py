"""A real TensorBoard server on a run directory, started and stopped from Python.

Every training run writes TensorBoard event files; chapter 7 opens them in TensorBoard itself,
photographs its pages and reads the same numbers back over HTTP. :class:`TensorBoard` runs
``python -m tensorboard.main`` as a child process of this interpreter and owns it: the server
listens on 127.0.0.1 only, on a free port, and stops when the ``with`` block ends, on
:meth:`TensorBoard.stop`, or when the interpreter exits, so a notebook kernel never leaves a
server behind holding a port.

Offline and quiet: TensorBoard 2.x has no update check and sends nothing anywhere by itself (its
pages carry a Content-Security-Policy with ``connect-src 'self'`` and serve their own fonts). The
flags below only make it predictable: the plain Python reader instead of the optional Rust data
server (one process to stop, the same behaviour on every platform), the whole log directory read
*before* the port opens (so the first request already sees every point), and every scalar kept
(TensorBoard's default keeps a random 1000 per tag, so read-back would miss steps). Its log goes to
a temporary file, not a pipe that could fill up and block it, and its last lines are quoted when it
fails to start.

:func:`screenshot` takes a PNG of one of its pages with headless Chromium, for the book's figures.
"""

from __future__ import annotations

import atexit
import errno
import importlib.util
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

# TensorBoard's default for scalars is 1000 points per tag, sampled at random from longer runs.
MAX_SCALAR_POINTS = 100_000

# Requests to our own server never go through a proxy from http_proxy and friends.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# As in tools/screenshot.py: a throw-away headless browser that reaches nothing on its own.
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
    "--no-proxy-server",
    # No host resolves but this machine: the page loads only what our server serves. The rule
    # matches IP literals too, so 127.0.0.1 needs its own EXCLUDE (without it: ERR_NAME_NOT_RESOLVED).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE [::1]",
)


class TensorBoard:
    """A running ``tensorboard`` server on ``logdir``; start it with :meth:`start`.

    Use it as a context manager so the server stops with the block::

        with TensorBoard.start("runs/ddpm") as board:
            print(board.url, board.runs())
            steps, values = board.scalars(".", "train/loss")
            screenshot(board.url + "#timeseries", "loss.png")
    """

    def __init__(self, logdir: Path, host: str, port: int, process: subprocess.Popen, log: IO[bytes]) -> None:
        # Built by start(); a TensorBoard object always stands for a process it launched.
        self.logdir = logdir
        self.host = host
        self.port = port
        self._process: subprocess.Popen | None = process
        self._log: IO[bytes] | None = log
        atexit.register(self.stop)

    @classmethod
    def start(
        cls,
        logdir: str | os.PathLike,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        timeout: float = 90.0,
        live: bool = False,
    ) -> TensorBoard:
        """Start TensorBoard on ``logdir`` and return once it answers HTTP requests.

        ``port=None`` picks a free port. ``live=False`` reads the event files once, completely,
        before the server answers: right for finished runs, and what makes :meth:`scalars`
        exact from the first call. ``live=True`` rereads them every 5 seconds, to follow a run
        that is still training (the first requests may then see part of the data).

        Raises:
            FileNotFoundError: ``logdir`` does not exist.
            ValueError: ``logdir`` is not a folder or holds no ``events.out.tfevents.*`` file.
            RuntimeError: tensorboard is not installed, or the server did not answer within
                ``timeout`` seconds (the message quotes the end of its log).
        """
        logdir = _checked_logdir(logdir)
        if importlib.util.find_spec("tensorboard") is None:
            raise RuntimeError(f"tensorboard is not installed; install it with: {sys.executable} -m pip install tensorboard")
        port = _free_port(host) if port is None else _checked_port(host, port)
        command = [
            sys.executable, "-m", "tensorboard.main",
            "--logdir", str(logdir),
            "--host", host,
            "--port", str(port),
            "--load_fast=false",  # the Python reader: no second process (the Rust data server) to stop
            f"--samples_per_plugin=scalars={MAX_SCALAR_POINTS}",
            # A finished run: load it all before opening the port. A live one: reread every 5 s.
            *(("--reload_interval=5",) if live else ("--reload_task=blocking", "--reload_interval=0")),
        ]  # fmt: skip
        log = tempfile.TemporaryFile(prefix="aigc-lab-tensorboard-", suffix=".log")
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        board = cls(logdir, host, port, process, log)
        try:
            board._wait_until_ready(timeout, need_runs=live)
        except BaseException:
            board.stop()
            raise
        return board

    @property
    def url(self) -> str:
        """The dashboard's address, ``http://127.0.0.1:PORT/``; add ``#timeseries`` or ``#images`` for a page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def page(self, dashboard: str = "timeseries", *, runs: str | None = None, tags: str | None = None) -> str:
        """The URL of a dashboard that draws in headless Chromium too, for :func:`screenshot`.

        ``"timeseries"`` (TensorBoard's default page: every scalar chart and image) is asked for
        its SVG charts (``?forceSVG=true``): its default WebGL charts stay empty in a browser
        without a GPU. ``"scalars"`` and ``"images"`` are the classic dashboards; they take
        ``runs`` and ``tags``, regular expressions that pick the runs and charts shown.
        ``"hparams"`` is the table of the runs' ``SummaryWriter.add_hparams`` settings and metrics.

        Raises:
            ValueError: an unknown dashboard, or filters on ``"timeseries"`` (its filtered view
                draws blank cards in headless Chromium; use ``"scalars"``).
        """
        if dashboard == "timeseries":
            if runs is not None or tags is not None:
                raise ValueError(
                    "the timeseries dashboard's filtered view draws blank charts in headless Chromium; "
                    "use page('scalars', runs=..., tags=...) to show some runs or tags"
                )
            return self.url + "?forceSVG=true#timeseries"
        if dashboard == "hparams":
            if runs is not None or tags is not None:
                raise ValueError("the hparams dashboard takes no runs or tags filter; it lists every run that called add_hparams")
            return self.url + "#hparams"
        if dashboard not in ("scalars", "images"):
            raise ValueError(f"dashboard must be 'timeseries', 'scalars', 'images' or 'hparams', got {dashboard!r}")
        filters = {"regexInput": runs, "tagFilter": tags}
        query = "".join(f"&{k}={urllib.parse.quote(v, safe='')}" for k, v in filters.items() if v is not None)
        return f"{self.url}#{dashboard}{query}"

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id (``None`` once stopped)."""
        return self._process.pid if self._process is not None else None

    def runs(self) -> list[str]:
        """The run names TensorBoard shows: each folder below ``logdir`` holding event files,
        relative to it (``"."`` for ``logdir`` itself)."""
        return sorted(self._get("data/runs"))

    def tags(self) -> dict[str, dict[str, list[str]]]:
        """``{run: {"scalars": [tag, ...], "images": [tag, ...]}}`` for every run."""
        found: dict[str, dict[str, list[str]]] = {run: {"scalars": [], "images": []} for run in self.runs()}
        for kind in ("scalars", "images"):
            # both endpoints answer {run: {tag: {"displayName": ..., "description": ...}}}
            for run, tags in self._get(f"data/plugin/{kind}/tags").items():
                found.setdefault(run, {"scalars": [], "images": []})[kind] = sorted(tags)
        return found

    def scalars(self, run: str, tag: str) -> tuple[list[int], list[float]]:
        """The points of scalar ``tag`` in ``run`` as the dashboard draws them: ``(steps, values)``.

        Raises:
            KeyError: ``run`` has no scalar ``tag`` (the message lists the tags it has).
        """
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        try:
            points = self._get(f"data/plugin/scalars/scalars?{query}")
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            have = self.tags().get(run)
            where = f"it has {have['scalars']}" if have is not None else f"the runs are {self.runs()}"
            raise KeyError(f"TensorBoard has no scalar {tag!r} in run {run!r}; {where}") from None
        # each point is [wall_time, step, value]
        return [int(step) for _, step, _ in points], [float(value) for _, _, value in points]

    def stop(self) -> None:
        """Stop the server: SIGTERM (it then removes its info file), SIGKILL after 10 s. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            atexit.unregister(self.stop)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"TensorBoard({str(self.logdir)!r}, url={self.url!r}, {state})"

    def _get(self, path: str, timeout: float = 30.0) -> Any:
        if not self.running:
            raise RuntimeError(f"TensorBoard on {self.logdir} is not running (stopped, or it exited); start it again")
        with _OPENER.open(self.url + path, timeout=timeout) as response:
            return json.load(response)

    def _wait_until_ready(self, timeout: float, *, need_runs: bool) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process is not None else None
                raise RuntimeError(f"TensorBoard exited with code {code} before it served {self.url}:\n{self._log_tail()}")
            try:
                with _OPENER.open(self.url + "data/runs", timeout=2) as response:
                    # live: the first reload runs in the background; wait until it has found a run
                    if not need_runs or json.load(response):
                        return
            except (OSError, ValueError):
                pass  # not listening yet (URLError and socket timeouts are OSErrors)
            if time.monotonic() > deadline:
                raise RuntimeError(f"TensorBoard did not answer at {self.url} within {timeout:g} s:\n{self._log_tail()}")
            time.sleep(0.2)

    def _log_tail(self, lines: int = 20) -> str:
        if self._log is None:
            return "(no log)"
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").rstrip()
        return "\n".join(text.splitlines()[-lines:]) or "(its log is empty)"


def _checked_logdir(logdir: str | os.PathLike) -> Path:
    logdir = Path(logdir).expanduser().resolve()
    if not logdir.exists():
        raise FileNotFoundError(f"no log directory {logdir}")
    if not logdir.is_dir():
        raise ValueError(f"{logdir} is a file; expected a log directory (a run folder or a folder of runs)")
    if next(logdir.rglob("events.out.tfevents.*"), None) is None:
        raise ValueError(f"{logdir} holds no TensorBoard event file (events.out.tfevents.*) at any depth; is it a run folder?")
    return logdir


def _free_port(host: str) -> int:
    """A port nobody listens on now; the OS picks it. (Another process could take it before
    TensorBoard binds it; on a single-user machine that does not happen in practice.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _checked_port(host: str, port: int) -> int:
    """``port`` if nobody listens on it. Checked before starting, because the readiness poll
    cannot tell our server from another one already answering on that port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise RuntimeError(f"port {port} on {host} is taken; stop what uses it, or pass port=None for a free one") from None
            raise RuntimeError(f"cannot listen on {host} port {port}: {error.strerror or error}") from None
    return port


def find_chromium() -> str:
    """The first of :data:`CHROMIUM_NAMES` on PATH."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}); install it with: apt-get install -y chromium fonts-noto-cjk"
    )


def screenshot(
    url: str,
    path: str | os.PathLike,
    *,
    window_size: tuple[int, int] = (1400, 900),
    wait_ms: int = 8000,
    timeout: float = 120.0,
) -> Path:
    """Save a PNG of the page at ``url`` (on this machine) to ``path``; returns ``path``.

    TensorBoard draws its pages with JavaScript after they load, so Chromium runs the page for
    ``wait_ms`` of *virtual* time first (``--virtual-time-budget``: timers fire without waiting
    in real time, and the clock stops while requests to the server are pending): 8000 ms drew
    every chart of a few runs. Take TensorBoard's URLs from :meth:`TensorBoard.page`: plain
    ``board.url + "#timeseries"`` draws empty WebGL charts without a GPU.

    Raises:
        ValueError: ``url`` is not an http(s) page on this machine.
        RuntimeError: Chromium is not installed, or it wrote no picture.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not _is_local(parts.hostname or ""):
        raise ValueError(f"screenshot takes a page on this machine (http://127.0.0.1:PORT/...), got {url!r}")
    width, height = window_size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    chromium = find_chromium()
    with tempfile.TemporaryDirectory(prefix="aigc-lab-chromium-") as profile:
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",  # a fresh profile: no cache, no state from an earlier shot
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={path.resolve()}",
            url,
        ]
        # its own session, so a hung browser is killed with all its helper processes
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise RuntimeError(f"Chromium did not finish a screenshot of {url} within {timeout:g} s") from None
    if not path.is_file() or path.stat().st_size == 0:
        tail = stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"Chromium wrote no screenshot of {url} (exit code {process.returncode}):\n{tail}")
    return path


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
