"""`pip install .` gives a `dicom-converter` command that works from any folder, and the
package keeps its layers: no module imports one above it, and no kind imports another."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT, testdata

PACKAGE = ROOT / "_dicom_converter"

# The layers, bottom first (the package's docstring draws the same map): a module may import
# the modules of its own layer that come before it and those of the layers below.
LAYERS = [
    "base", "sop", "reading", "timing", "values", "inputs",
    "pixels.libjpeg_turbo", "pixels.decode", "pixels.display", "pixels.helper",
    "writers", "gif", "dump", "text", "redaction", "geometry", "classify", "layout", "job",
    "kinds.*",
    "results", "convert", "series", "pool", "index_page", "manifest", "batch", "cli",
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] != "__init__":
            names[".".join(parts)] = path
    return names


def layer_of(module: str) -> int:
    return LAYERS.index("kinds.*") if module.startswith("kinds.") else LAYERS.index(module)


def imported_modules(path: Path) -> set[str]:
    """The package's modules `path` imports, at run time or for type checking alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("_dicom_converter."):
            found.add(node.module.removeprefix("_dicom_converter."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("_dicom_converter.") for a in node.names
                      if a.name.startswith("_dicom_converter.")}
    return found


def test_every_module_has_a_layer_and_none_imports_upward_or_across_kinds():
    modules = module_names()
    assert "kinds.dose" in modules and "pixels.libjpeg_turbo" in modules and "cli" in modules
    problems = []
    for module, path in modules.items():
        for imported in imported_modules(path):
            if module.startswith("kinds.") and imported.startswith("kinds."):
                if module.split(".")[1] != imported.split(".")[1]:
                    problems.append(f"{module} imports another kind, {imported}")
            elif layer_of(imported) > layer_of(module) or (imported == module):
                problems.append(f"{module} imports {imported}, above it")
    assert not problems, problems


def test_no_module_is_over_about_a_thousand_lines():
    sizes = {module: path.read_text(encoding="utf-8").count("\n") for module, path in module_names().items()}
    assert max(sizes.values()) <= 1000, sorted(sizes.items(), key=lambda item: -item[1])[:3]


def test_the_dispatch_has_one_writer_for_every_kind_the_classification_names():
    from _dicom_converter.convert import WRITERS

    returns = [node for node in ast.walk(ast.parse((PACKAGE / "classify.py").read_text(encoding="utf-8")))
               if isinstance(node, ast.Return)]
    named = {leaf.value for node in returns for leaf in ast.walk(node) if isinstance(leaf, ast.Constant)}
    assert named == set(WRITERS), (named, set(WRITERS))
    assert all(writer.__module__.startswith("_dicom_converter.kinds.") for writer in WRITERS.values())


def test_libjpeg_turbo_is_a_pydicom_decoder_plugin():
    from pydicom.pixels.decoders import JPEGLosslessSV1Decoder

    from _dicom_converter.pixels import libjpeg_turbo

    libjpeg_turbo.use_libjpeg_turbo()
    libjpeg_turbo.use_libjpeg_turbo()  # once per process, whoever asks
    assert libjpeg_turbo.PLUGIN_LABEL in JPEGLosslessSV1Decoder.available_plugins
    assert libjpeg_turbo.is_available(JPEGLosslessSV1Decoder.UID)
    assert not libjpeg_turbo.is_available("1.2.840.10008.1.2.4.80")  # JPEG-LS is not its
    assert set(libjpeg_turbo.DECODER_DEPENDENCIES) == set(libjpeg_turbo.TURBO_SYNTAXES)


@pytest.mark.skipif(sys.platform == "win32", reason="the venv's scripts folder is named differently")
def test_pip_install_gives_a_command_that_works_from_any_folder(tmp_path):
    """A fresh virtual environment (with this interpreter's packages, so nothing is
    downloaded), `pip install` of a copy of the project, then `dicom-converter` from a
    folder that holds no code: the page's script, package data, must be installed too."""
    source = tmp_path / "project"
    source.mkdir()
    for name in ("dicom_converter.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    environment = tmp_path / "venv"
    # this interpreter's pip and setuptools (requirements-dev.txt) install into it: no download
    venv.create(environment, system_site_packages=True, with_pip=False)
    python = environment / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([environment / "bin" / "dicom-converter", str(testdata("CT_small.dcm")), "-o", "out"],
                         capture_output=True, text=True, cwd=elsewhere, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (elsewhere / "out" / "CT_small.png").stat().st_size > 0
    page = (elsewhere / "out" / "index.html").read_text(encoding="utf-8")
    script = (PACKAGE / "index.js").read_text(encoding="utf-8")
    assert f"<script>{script}</script>" in page
    # the command ran the installed copy, not this checkout
    where = subprocess.run([python, "-c", "import _dicom_converter; print(_dicom_converter.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere)
    assert Path(where.stdout.strip()).is_relative_to(environment), where.stdout + where.stderr
