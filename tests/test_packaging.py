"""Project plumbing: environment.yml mirrors pyproject, the CLI explains itself, CI can't be fooled."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name_and_spec(requirement: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return dict(_name_and_spec(r) for r in reqs)


def _environment_requirements() -> dict[str, str]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip_deps = next(d["pip"] for d in deps if isinstance(d, dict))
    found = {}
    for item in [d for d in deps if isinstance(d, str)] + pip_deps:
        if item in ("pip", "-e .") or item.startswith("python="):
            continue
        name, spec = _name_and_spec(item)
        found[CONDA_TO_PYPI.get(name, name)] = spec
    return found


def test_environment_yml_mirrors_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_python_version_is_the_same_everywhere():
    """pyproject's minimum Python, ruff's target and environment.yml's pin name one version (tomllib needs 3.11)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", config["project"]["requires-python"]).groups()
    pinned = next(d for d in yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
                  if isinstance(d, str) and d.startswith("python="))
    assert pinned == "python={}.{}".format(*minimum)
    assert config["tool"]["ruff"]["target-version"] == "py{}{}".format(*minimum)
    assert sys.version_info >= tuple(map(int, minimum))


def test_cli_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "longlab.cli", "--help"], capture_output=True, text=True,
                            check=True)
    from longlab.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sub.choices, "no subcommands registered"
    for name, parser in sub.choices.items():
        assert name in result.stdout
        assert parser.description, f"`longlab {name}` has no description"


def test_bench_lists_targets_and_runs_attend(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "longlab.cli", "bench", "attend", "--sizes", "64", "128", "--repeats", "1",
         "--device", "cpu", "--out", str(tmp_path)], capture_output=True, text=True, check=True,
    )
    assert "fwd_ratio" in result.stdout
    from longlab.bench.common import read_csv

    rows = read_csv(tmp_path / "attend_cpu.csv")
    assert [int(r["N"]) for r in rows] == [64, 128]
    assert all(float(r["fwd_ratio"]) > 0 for r in rows)


def test_ci_script_fails_when_no_test_passes(tmp_path):
    """.ci/run must not accept a run where pytest collected nothing (exit 5) or passed nothing."""
    fake = tmp_path / "repo"
    (fake / ".ci").mkdir(parents=True)
    (fake / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    for body, should_pass in [("echo 'no tests ran'; exit 5", False), ("echo 'nothing'; exit 0", False),
                              ("echo '1 failed, 3 passed'; exit 1", False), ("echo '3 passed in 1.0s'; exit 0", True)]:
        (fake / "Makefile").write_text(f"test:\n\t@{body}\n")
        result = subprocess.run(["bash", ".ci/run"], cwd=fake, capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert (result.returncode == 0) == should_pass, (body, result.stdout, result.stderr)


@pytest.mark.parametrize("target", ["lab", "test"])
def test_makefile_has_the_two_commands(target):
    assert re.search(rf"^{target}: setup$", (ROOT / "Makefile").read_text(), re.M)
