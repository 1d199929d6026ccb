"""The package's layers point one way (``../shared/DESIGN.md``, section 3), read from the source.

Every ``import`` of an ``aigc_lab`` module is counted, also the ones inside functions: a lazy
import hides a loop from Python at start-up but not from a reader, nor from a refactoring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aigc_lab"

# module -> layer; a module may import modules of its own layer or below, never above.
LAYERS: dict[str, int] = {
    "aigc_lab": 0,
    "aigc_lab.provenance": 0,
    "aigc_lab.runtime": 1,
    "aigc_lab.workers": 1,  # a page's training calls in processes of one thread: runtime only
    "aigc_lab.images": 1,
    "aigc_lab.checkpoint": 1,
    "aigc_lab.distributed": 1,  # torch.distributed only: the loop (layer 4) calls it
    "aigc_lab.board": 1,
    "aigc_lab.stats": 1,  # the standard library only  # the standard library only: a TensorBoard server and Chromium screenshots
    "aigc_lab.viz": 2,
    "aigc_lab.contract": 2,
    "aigc_lab.losses": 2,
    "aigc_lab.similarity": 2,
    "aigc_lab.image_losses": 2,
    "aigc_lab.perceptual": 2,
    "aigc_lab.degradations": 2,
    "aigc_lab.styles": 2,
    "aigc_lab.synthesis": 2,  # interpolation, GIFs, a stereo view: images in, images out  # the classical oil and pencil renderings: the pairs datasets draw their targets with them
    "aigc_lab.data": 2,  # and every aigc_lab.data.* module
    "aigc_lab.models": 3,  # and every aigc_lab.models.* module
    "aigc_lab.baselines": 3,
    "aigc_lab.classical": 3,
    "aigc_lab.metrics": 4,
    "aigc_lab.restore": 4,
    "aigc_lab.generative_inpainting": 4,
    "aigc_lab.style_transfer": 4,
    "aigc_lab.train": 4,
    "aigc_lab.runs": 5,
    "aigc_lab.recipes": 5,
    "aigc_lab.loss_study": 5,
    "aigc_lab.restoration_study": 5,
    "aigc_lab.style_study": 5,
    "aigc_lab.tools_study": 5,
    "aigc_lab.face_study": 5,
    "aigc_lab.view_study": 5,
    "aigc_lab.landscape_study": 5,
    "aigc_lab.attribute_face_study": 5,
    "aigc_lab.landscape_gan_study": 5,
    "aigc_lab.trends_study": 5,
    "aigc_lab.notebooks": 5,
    "aigc_lab.prose": 5,
    "aigc_lab.cli": 6,
    "aigc_lab.leaderboard": 6,  # trains and measures every recipe
    "aigc_lab.data_needs": 6,  # trains and measures section 8.2's faces runs
    "aigc_lab.__main__": 6,
}
# Files under models/ that hold blocks several families share; a family's file may import these,
# never another family's file.
SHARED_MODEL_BLOCKS = {"aigc_lab.models.unet", "aigc_lab.models.conditioning", "aigc_lab.models.patchgan", "aigc_lab.models.image_unet"}
# A model that subclasses another family's model, not borrowing a helper from it: the file it
# extends, and only that one. It may use the base file's public names only (checked below). Why a
# file of its own: the registry imports it only when asked for it, so pages that train only the
# base model do not depend on (and are not staled by) the extension's code.
MODEL_EXTENSIONS = {"aigc_lab.models.rotation_vae": {"aigc_lab.models.vae"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in its body (``from aigc_lab import x`` counts as ``aigc_lab.x`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "aigc_lab":
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= submodules or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "aigc_lab"}
    return found & known


def _layer(module: str) -> int:
    for prefix in (module, ".".join(module.split(".")[:2])):
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


GRAPH = {name: _imports(path, set(_modules())) - {name} for name, path in _modules().items()}


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in GRAPH:
        try:
            _layer(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"give these modules a layer in LAYERS (and DESIGN.md): {unplaced}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    upward = sorted(d for d in GRAPH[module] if _layer(d) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports {[(d, _layer(d)) for d in upward]} from above"


def test_no_import_loop() -> None:
    # the package's __init__ is imported by every submodule's import; it imports provenance only
    graph = {m: {d for d in deps if d != "aigc_lab"} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                loop = path[path.index(dep) :] + [dep]
                pytest.fail("import loop: " + " -> ".join(loop), pytrace=False)
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_model_family_imports_another() -> None:
    families = {m for m in GRAPH if m.startswith("aigc_lab.models.") and m not in SHARED_MODEL_BLOCKS}
    crossings = {m: sorted(GRAPH[m] & families - MODEL_EXTENSIONS.get(m, set())) for m in families}
    crossings = {m: c for m, c in crossings.items() if c}
    assert not crossings, f"model families importing another family's file (move the helper a layer down): {crossings}"


def test_a_model_extension_uses_only_its_base_files_public_names() -> None:
    modules = _modules()
    for extension, bases in MODEL_EXTENSIONS.items():
        assert extension in modules, f"{extension} is declared an extension but no longer exists"
        assert bases <= GRAPH[extension], f"{extension} no longer imports {sorted(bases - GRAPH[extension])}: drop it from MODEL_EXTENSIONS"
        private = [
            f"{node.module}.{alias.name}"
            for node in ast.walk(ast.parse(modules[extension].read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and node.module in bases
            for alias in node.names
            if alias.name.startswith("_")
        ]
        assert not private, f"{extension} imports private names of the model it extends: {private}"


def test_models_know_no_dataset_loop_or_command_line() -> None:
    forbidden = ("aigc_lab.data", "aigc_lab.train", "aigc_lab.cli", "aigc_lab.metrics", "aigc_lab.runs", "aigc_lab.recipes")
    offenders = {
        m: sorted(d for d in GRAPH[m] if d.startswith(forbidden))
        for m in GRAPH
        if m.startswith("aigc_lab.models") and any(d.startswith(forbidden) for d in GRAPH[m])
    }
    assert not offenders, f"a model must not import a dataset, the loop, a metric or the command line: {offenders}"


def test_the_test_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from aigc_lab.models import build_model\n    import aigc_lab.train\n")
    assert _imports(source, set(_modules())) == {"aigc_lab.models", "aigc_lab.train"}
