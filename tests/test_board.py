"""aigc_lab.board: a real TensorBoard server on event files written here, read back over HTTP."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from aigc_lab.board import CHROMIUM_NAMES, TensorBoard, screenshot

LOSSES = [1.0 / (step + 1) + 0.125 * step for step in range(10)]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("runs")
    with SummaryWriter(root / "run_a") as writer:
        for step, loss in enumerate(LOSSES):
            writer.add_scalar("train/loss", loss, step)
    with SummaryWriter(root / "run_b") as writer:
        writer.add_scalar("eval/fd", 3.5, 0)
    return root


@pytest.fixture(scope="module")
def board(logdir):
    with TensorBoard.start(logdir, timeout=60) as running:
        yield running
    assert not running.running


def test_reads_back_what_was_written(board):
    assert board.runs() == ["run_a", "run_b"]
    steps, values = board.scalars("run_a", "train/loss")
    assert steps == list(range(10))
    np.testing.assert_allclose(values, np.float32(LOSSES), rtol=1e-6)
    tags = board.tags()
    assert tags["run_a"] == {"scalars": ["train/loss"], "images": []}
    assert tags["run_b"]["scalars"] == ["eval/fd"]


def test_unknown_tag_names_what_the_run_has(board):
    with pytest.raises(KeyError, match=r"no scalar 'train/lost' in run 'run_a'; it has \['train/loss'\]"):
        board.scalars("run_a", "train/lost")


def test_pages(board):
    assert board.url.startswith("http://127.0.0.1:") and board.url.endswith("/")
    assert board.page() == board.url + "?forceSVG=true#timeseries"
    assert board.page("scalars", runs="run_a", tags="train/loss") == board.url + "#scalars&regexInput=run_a&tagFilter=train%2Floss"
    with pytest.raises(ValueError, match="use page"):
        board.page("timeseries", tags="loss")
    assert board.page("hparams") == board.url + "#hparams"
    with pytest.raises(ValueError, match="takes no runs or tags"):
        board.page("hparams", runs="run_a")
    with pytest.raises(ValueError, match="dashboard must be"):
        board.page("graphs")


def test_stop_ends_the_process_and_frees_the_port(logdir):
    board = TensorBoard.start(logdir / "run_b", timeout=60)
    process, url = board._process, board.url
    with urllib.request.urlopen(url + "data/runs", timeout=10) as response:
        assert response.status == 200
    assert board.runs() == ["."], "a run folder itself is the run '.'"
    board.stop()
    board.stop()  # idempotent
    assert process.poll() is not None and not board.running and board.pid is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "data/runs", timeout=5)
    with pytest.raises(RuntimeError, match="not running"):
        board.runs()


def test_missing_logdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        TensorBoard.start(tmp_path / "no_such_run")


def test_logdir_without_event_files(tmp_path):
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty_run holds no TensorBoard event file"):
        TensorBoard.start(tmp_path / "empty_run")


def test_taken_port(board, logdir):
    with pytest.raises(RuntimeError, match=rf"port {board.port} on 127.0.0.1 is taken"):
        TensorBoard.start(logdir, port=board.port)


def test_server_that_exits_says_why(logdir, monkeypatch):
    # a flag TensorBoard rejects (argparse keeps the last one): it exits, and its words are quoted
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: popen([*command, "--reload_interval=-1"], **kw))
    with pytest.raises(RuntimeError, match=r"(?s)TensorBoard exited with code 2 before it served .*reload_interval"):
        TensorBoard.start(logdir, timeout=60)


def test_host_that_cannot_be_served(logdir):
    with pytest.raises(RuntimeError, match="cannot listen on no-such-host.invalid port 6006"):
        TensorBoard.start(logdir, host="no-such-host.invalid", port=6006)


def test_screenshot_refuses_pages_elsewhere(tmp_path):
    with pytest.raises(ValueError, match="page on this machine"):
        screenshot("https://example.com/", tmp_path / "x.png")


def test_screenshot_of_the_scalars(board, tmp_path):
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        pytest.skip(f"Chromium is not installed (none of {CHROMIUM_NAMES} on PATH)")
    png = screenshot(board.page("scalars", tags="train/loss"), tmp_path / "scalars.png", window_size=(1000, 700))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
