"""One plugin protocol for the command line: `longlab COMMAND` and `longlab bench TARGET` alike.

A plugin is one module in a plugin package (`longlab.commands` for commands, `longlab.bench` for
benchmarks). Adding one means adding one file that defines:

    NAME: str           the word typed on the command line (`longlab NAME`, `longlab bench NAME`)
    HELP: str           one line for the parent's --help listing; the module docstring is the long help
    register(parser)    add the plugin's options to its own argparse parser
    main(args)          do the work with the parsed options, never changing `args`. It returns what the
                        parent package asks for: a command returns its exit status (int); a benchmark
                        returns its rows (list of dicts, one per measurement) and the `bench` command
                        prints and saves them.

Modules whose name starts with "_", and modules lacking any of the four names, are helpers, not plugins.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from types import ModuleType

REQUIRED = ("NAME", "HELP", "register", "main")


def discover(package: ModuleType) -> dict[str, ModuleType]:
    """Map NAME -> module for every plugin module directly inside `package`, sorted by NAME."""
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if all(hasattr(module, attr) for attr in REQUIRED):
            if module.NAME in found:
                raise ValueError(f"two plugins in {package.__name__} are named {module.NAME!r}: "
                                 f"{found[module.NAME].__name__} and {module.__name__}; rename one")
            found[module.NAME] = module
    return dict(sorted(found.items()))


def add_subparsers(parser: argparse.ArgumentParser, package: ModuleType, dest: str, metavar: str):
    """One subcommand per plugin of `package`, with the plugin's options; `args.<dest>` is the chosen NAME.

    Returns argparse's subparsers action: `.choices` maps NAME -> that plugin's parser (to add options that
    every plugin of the package shares) and `.add_parser` adds a subcommand that is not a plugin.
    """
    sub = parser.add_subparsers(dest=dest, required=True, metavar=metavar)
    for name, module in discover(package).items():
        child = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.register(child)
    return sub


def defaults(module: ModuleType) -> argparse.Namespace:
    """The options a plugin gets when given none on the command line (a fresh namespace)."""
    parser = argparse.ArgumentParser()
    module.register(parser)
    return parser.parse_args([])
