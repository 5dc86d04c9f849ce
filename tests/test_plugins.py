"""One plugin protocol for commands and benchmarks; benchmarks return rows and leave `args` alone."""
from __future__ import annotations

import argparse
import copy
import types

import pytest

from longlab import bench, commands, plugins
from longlab.cli import build_parser


def test_commands_and_benchmarks_follow_the_same_protocol():
    found = {"commands": plugins.discover(commands), "bench": bench.targets()}
    assert {"bench", "parallel", "train"} <= set(found["commands"])
    assert {"attend", "dilated", "memory"} <= set(found["bench"])
    for group in found.values():
        for name, module in group.items():
            assert module.NAME == name and module.HELP and module.__doc__
            assert callable(module.register) and callable(module.main)
    assert "common" not in found["bench"]  # a helper module, not a target


def test_benchmark_returns_rows_and_does_not_change_args():
    args = build_parser().parse_args(["bench", "attend", "--sizes", "32", "--repeats", "1", "--device", "cpu"])
    before = copy.deepcopy(vars(args))
    rows = bench.targets()["attend"].main(args)
    assert vars(args) == before
    assert [r["N"] for r in rows] == [32] and rows[0]["fwd_ratio"] > 0


def test_dilated_quick_does_not_change_args():
    args = build_parser().parse_args(["bench", "dilated", "--quick", "--causal", "no", "--device", "cpu",
                                      "--heads", "1", "--head-dim", "8", "--segment-lengths", "64",
                                      "--dilation-rates", "2", "--no-flex"])
    before = copy.deepcopy(vars(args))
    rows = bench.targets()["dilated"].main(args)
    assert vars(args) == before
    assert [r["N"] for r in rows] == [2048, 8192]


def test_defaults_is_a_fresh_namespace():
    first = plugins.defaults(bench.targets()["attend"])
    first.sizes.append(1)
    assert plugins.defaults(bench.targets()["attend"]).sizes == [1024, 2048, 4096, 8192, 16384]


def _fake_package(**modules):
    """A package object whose plugin modules are the given namespaces (discover only needs __path__ + import)."""
    return types.SimpleNamespace(__name__="fake", __path__=[], **modules)


def test_two_plugins_with_one_name_are_refused(monkeypatch):
    module = types.ModuleType("fake.a")
    module.NAME, module.HELP, module.register, module.main = "x", "h", lambda p: None, lambda a: 0
    infos = [types.SimpleNamespace(name="a"), types.SimpleNamespace(name="b")]
    monkeypatch.setattr(plugins.pkgutil, "iter_modules", lambda path: infos)
    monkeypatch.setattr(plugins.importlib, "import_module", lambda name: module)
    with pytest.raises(ValueError, match="two plugins in fake are named 'x': fake.a and fake.a; rename one"):
        plugins.discover(_fake_package())


def test_module_missing_main_is_not_a_plugin(monkeypatch):
    helper = types.SimpleNamespace(NAME="x", HELP="h", register=lambda p: None)
    monkeypatch.setattr(plugins.pkgutil, "iter_modules", lambda path: [types.SimpleNamespace(name="x")])
    monkeypatch.setattr(plugins.importlib, "import_module", lambda name: helper)
    assert plugins.discover(_fake_package()) == {}


def test_bench_out_defaults_to_data_bench_in_the_working_directory():
    args = build_parser().parse_args(["bench", "memory"])
    assert args.out == "data/bench"
    assert isinstance(build_parser(), argparse.ArgumentParser)
