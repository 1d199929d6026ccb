"""Which package code made a result (aigc_lab/provenance.py): hashes, closures, run records, the log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aigc_lab import provenance
from aigc_lab.data import load_dataset
from aigc_lab.models import MSEGenerator
from aigc_lab.train import TrainConfig, fit
from aigc_lab.runs import load_run

REPO = provenance.PACKAGE_DIR.parent


def test_file_hash_reads_crlf_as_lf(tmp_path: Path) -> None:
    (tmp_path / "unix.py").write_bytes(b"a = 1\nb = 2\n")
    (tmp_path / "windows.py").write_bytes(b"a = 1\r\nb = 2\r\n")
    (tmp_path / "other.py").write_bytes(b"a = 1\nb = 3\n")
    unix = provenance.file_hash(tmp_path / "unix.py")
    assert unix.startswith("sha256:") and len(unix) == len("sha256:") + 64
    assert provenance.file_hash(tmp_path / "windows.py") == unix != provenance.file_hash(tmp_path / "other.py")


def test_code_closure_follows_imports_and_only_them() -> None:
    closure = provenance.code_closure(["aigc_lab.models.vae"])
    assert {"aigc_lab/__init__.py", "aigc_lab/models/__init__.py", "aigc_lab/models/vae.py", "aigc_lab/contract.py"} <= set(closure)
    # a model knows the contract, not the loop: the loop's files enter a run's record through fit itself
    assert not {"aigc_lab/train.py", "aigc_lab/checkpoint.py"} & set(closure)
    assert {"aigc_lab/train.py", "aigc_lab/checkpoint.py", "aigc_lab/runtime.py"} <= set(provenance.code_closure(["aigc_lab.train"]))
    # the registry imports a family only when asked, so the VAE's run does not depend on the other families
    assert not {"aigc_lab/models/gan.py", "aigc_lab/models/diffusion.py", "aigc_lab/cli.py"} & set(closure)
    assert closure["aigc_lab/models/vae.py"] == provenance.file_hash(REPO / "aigc_lab/models/vae.py")
    assert provenance.code_closure(["torch", "json"]) == {}


def test_imported_files_are_the_package_modules_given() -> None:
    files = provenance.imported_files({"aigc_lab.runtime": None, "aigc_lab.models.gan": None, "numpy": None})
    assert list(files) == ["aigc_lab/models/gan.py", "aigc_lab/runtime.py"]
    assert "aigc_lab/provenance.py" in provenance.imported_files()  # this process imported it


def test_changed_files_names_edited_and_deleted_files(tmp_path: Path) -> None:
    for name in ("aigc_lab/runtime.py", "aigc_lab/images.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    recorded = provenance.code_closure(["aigc_lab.runtime"]) | provenance.code_closure(["aigc_lab.images"])
    recorded = {k: v for k, v in recorded.items() if k in ("aigc_lab/runtime.py", "aigc_lab/images.py")}
    assert provenance.changed_files(recorded, tmp_path) == []
    with open(tmp_path / "aigc_lab/images.py", "a") as f:
        f.write("\n# a change\n")
    (tmp_path / "aigc_lab/runtime.py").unlink()
    assert provenance.changed_files(recorded, tmp_path) == ["aigc_lab/images.py", "aigc_lab/runtime.py (deleted)"]


def _tiny_run(run_dir: Path, steps: int = 2):
    model = MSEGenerator(image_shape=(1, 8, 8))
    return fit(model, load_dataset("digits", "train"), run_dir, TrainConfig(steps=steps, log_every=1))


def test_fit_records_the_code_that_trained_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(provenance.NOTEBOOK_ENV, "book/01_background.ipynb")
    _tiny_run(tmp_path / "run")
    record = provenance.read_run_record(tmp_path / "run")
    assert record["trained_by"] == "book/01_background.ipynb"
    assert {"aigc_lab/models/mlp.py", "aigc_lab/train.py", "aigc_lab/data/digits.py"} <= set(record["code"])
    assert "aigc_lab/models/vae.py" not in record["code"]
    assert not provenance.run_is_stale(tmp_path / "run")
    record["code"]["aigc_lab/models/mlp.py"] = "sha256:" + "0" * 64  # trained by another version of mlp.py
    (tmp_path / "run" / provenance.RUN_FILE).write_text(json.dumps(record))
    assert provenance.run_is_stale(tmp_path / "run")


def test_runs_without_or_with_a_damaged_record(tmp_path: Path) -> None:
    assert provenance.read_run_record(tmp_path) is None and provenance.run_is_stale(tmp_path)
    (tmp_path / provenance.RUN_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"provenance\.json is damaged .*delete the run directory"):
        provenance.read_run_record(tmp_path)
    (tmp_path / provenance.RUN_FILE).write_text('{"trained_by": null}')
    with pytest.raises(ValueError, match="is not a run record"):
        provenance.read_run_record(tmp_path)


def test_the_log_names_runs_trained_and_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(provenance.LOG_ENV, str(log))
    _tiny_run(tmp_path / "run")
    _tiny_run(tmp_path / "run")  # finished already: fit loads it, trains nothing
    load_run(tmp_path / "run")
    provenance.log_imports()
    entries = provenance.read_log(log)
    runs = [(e["event"], Path(e["run_dir"]).name) for e in entries if e["kind"] == "run"]
    assert runs == [("trained", "run"), ("loaded", "run"), ("loaded", "run")]
    assert all(e["record"]["code"] for e in entries if e["kind"] == "run")
    assert "aigc_lab/train.py" in entries[-1]["files"]


def test_no_log_without_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(provenance.LOG_ENV, raising=False)
    provenance.log("imports", files={})
    provenance.log_run(tmp_path, "loaded")
    assert list(tmp_path.iterdir()) == []
