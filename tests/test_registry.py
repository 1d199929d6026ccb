"""The model and dataset registries are read from the source: a new family's file registers itself
without an edit to a file every page imports, and nothing is imported before it is asked for."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import aigc_lab.models as models
from aigc_lab.data import registry


def test_every_registered_model_is_the_class_its_source_names():
    for name, info in models.describe_models().items():
        cls = models.MODELS[name]
        assert (cls.__name__, cls.__module__, cls.name) == (info.cls, info.module, name)
        if info.default_steps is not None:  # the listing shows what `train MODEL` would train
            assert info.default_steps == cls.default_steps, name


def test_the_book_s_models_are_registered():
    names = set(models.describe_models())
    assert {"vae", "dcgan", "wgan", "pixelcnn", "row-rnn", "ddpm", "mse-generator", "wgan-gp-mlp"} <= names
    assert {"denoiser", "super-resolution", "inpainter", "low-light", "low-light-paired", "restorer"} <= names


def test_a_new_family_file_registers_its_models(tmp_path, monkeypatch):
    (tmp_path / "toy.py").write_text(textwrap.dedent('''
        class Base:
            default_steps = 300

        class Toy(Base):
            """A toy model: one line of summary.

            More text."""
            name = "toy"

        class Helper:  # no name: not registered
            pass
    '''))
    (tmp_path / "__init__.py").write_text("")
    monkeypatch.setattr(models, "_FOLDER", tmp_path)
    found = models._scan.__wrapped__()
    assert list(found) == ["toy"]
    assert found["toy"].cls == "Toy" and found["toy"].summary == "A toy model: one line of summary."
    assert found["toy"].default_steps == 300  # inherited from a base in the same file


def test_two_classes_under_one_name_are_refused(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text('class A:\n    name = "same"\n')
    (tmp_path / "b.py").write_text('class B:\n    name = "same"\n')
    monkeypatch.setattr(models, "_FOLDER", tmp_path)
    with pytest.raises(RuntimeError, match="two models are registered as 'same'"):
        models._scan.__wrapped__()


def test_unknown_model_names_the_closest():
    with pytest.raises(ValueError, match="did you mean 'dcgan'"):
        models.build_model("dcgna")


def test_listing_and_building_import_only_what_is_asked_for():
    code = (
        "import sys\n"
        "from aigc_lab.cli import main\n"
        "main(['models'])\n"
        "from aigc_lab.models import build_model\n"
        "build_model('vae', image_shape=(1, 8, 8))\n"
        "from aigc_lab.data import load_dataset\n"
        "print(sorted(m for m in sys.modules if m.startswith('aigc_lab.models.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ddpm" in out and "denoiser" in out  # the listing names every model ...
    assert out.strip().splitlines()[-1] == "['aigc_lab.models.vae']"  # ... but imported only the VAE's file


def test_every_dataset_file_is_found_from_its_source():
    declared = registry._declared()
    assert {"digits", "photos", "objects3d", "shapes", "folder"} <= set(declared)
    assert declared["shapes"] == "aigc_lab.data.shapes"


def test_a_declared_dataset_is_imported_when_asked_for(tmp_path, monkeypatch):
    (tmp_path / "toyset_for_test.py").write_text(textwrap.dedent('''
        import torch
        from aigc_lab.data.registry import ImageDataset, register_dataset

        @register_dataset("toyset", online=False, description="two gray squares", splits=("train",))
        def load_toyset(split="train"):
            return ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ["square"], name="toyset", split=split)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_declared", lambda: {"toyset": "toyset_for_test"})
    monkeypatch.delitem(sys.modules, "toyset_for_test", raising=False)
    assert "toyset_for_test" not in sys.modules
    assert len(registry.load_dataset("toyset")) == 2
    assert "toyset_for_test" in sys.modules
