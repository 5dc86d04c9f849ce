"""The built wheel works when installed for real (not editable) and never writes into its own install folder.

The fresh venv gets longlab only from the wheel. Its dependencies (torch, tqdm, ...) come from the test
environment's site-packages through a path line in a .pth file: a .pth path line is appended to sys.path
without processing that folder's own .pth files, so the editable longlab installed there stays invisible
(the test checks which longlab file was imported).
"""
from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below `folder` -> (size, mtime in ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def _run(*cmd, cwd=None) -> str:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_installed_wheel_runs_a_benchmark_from_elsewhere(tmp_path):
    # build from a copy of the sources, so the build's own folders (build/, *.egg-info) stay out of the checkout
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("longlab", "viz"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", tmp_path / "dist",
         src)
    (wheel,) = (tmp_path / "dist").glob("longlab-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    (purelib / "test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel)

    where = _run(python, "-c", "import longlab; print(longlab.__file__)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(purelib), f"imported {where}, not the installed wheel"
    before = _files(purelib)

    work = tmp_path / "work"
    work.mkdir()
    printed = _run(venv / "bin" / "longlab", "bench", "attend", "--sizes", "32", "--repeats", "1", "--device", "cpu",
                   cwd=work)
    assert "fwd_ratio" in printed
    written = work / "data" / "bench" / "attend_cpu.csv"
    assert written.is_file() and written.read_text().startswith("N,")
    assert _files(purelib) == before, "the benchmark wrote inside site-packages"
