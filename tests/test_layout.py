"""The package keeps the structure docs/design.md draws: each subpackage imports only the
layers below it (imports inside functions count), so there is no cycle; the library never
imports the commands; no module is over 350 lines and no function over 80; the checkpoint's
meta is read through ``xception_mx.checkpoint`` alone."""
import ast
import os
import re

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "xception_mx")
# subpackage -> the subpackages it may import (the top-level modules: errors, atomic, faults,
# progress, cpu, _threads, are below them all)
MAY_IMPORT = {
    "model": set(),
    "checkpoint": set(),
    "images": {"model"},
    "keras_side": {"model"},
    "conversion": {"model", "images", "keras_side", "checkpoint"},
    "serving": {"model", "images", "checkpoint"},
    "training": {"model", "images", "checkpoint", "conversion"},
    "evaluation": {"model", "images", "keras_side", "checkpoint", "conversion", "serving"},
    "validation": {"model", "images", "keras_side", "checkpoint", "conversion", "serving",
                   "training"},
    "deploy": {"images", "checkpoint", "serving"},
}
MAY_IMPORT["commands"] = set(MAY_IMPORT) | {"commands"}
# the top-level modules: the shared ones import no subpackage, but the fault points (which
# walk the network's BatchNorm blocks) and the library API (which fronts the layers)
TOP_MAY_IMPORT = {"faults": {"model"}, "api": {"conversion", "serving", "validation"},
                  "__init__": {"images", "model", "serving"}}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 80


def modules():
    """``(path relative to the package, source)`` of every module."""
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    yield os.path.relpath(path, PACKAGE), f.read()


def imported(relative, source):
    """The ``xception_mx`` modules ``source`` imports, anywhere in it."""
    parts = ["xception_mx"] + relative[:-3].split(os.sep)
    package = parts[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module
            yield from (module + "." + a.name for a in node.names)


def subpackage(name):
    """``xception_mx.X.Y...`` -> ``X`` when X is a subpackage, else ``None``."""
    parts = name.split(".")
    if parts[0] != "xception_mx" or len(parts) < 2:
        return None
    return parts[1] if os.path.isdir(os.path.join(PACKAGE, parts[1])) else None


def import_edges():
    """``{(importer, imported): first module found importing it}`` between subpackages, and
    from the top-level modules as ``("module name", imported)``."""
    edges = {}
    for relative, source in modules():
        here = subpackage("xception_mx." + relative.replace(os.sep, ".")) or \
            "top:" + relative[:-3]
        for name in imported(relative, source):
            there = subpackage(name)
            if there and there != here:
                edges.setdefault((here, there), relative)
    return edges


def test_subpackages_import_only_the_layers_below_them():
    allowed = dict(MAY_IMPORT, **{"top:" + name: layers
                                   for name, layers in TOP_MAY_IMPORT.items()})
    wrong = ["%s imports %s (%s)" % (a, b, where) for (a, b), where in import_edges().items()
             if b not in allowed.get(a, set())]
    assert not wrong, wrong
    assert set(MAY_IMPORT) == {name for name in os.listdir(PACKAGE)
                               if os.path.isfile(os.path.join(PACKAGE, name, "__init__.py"))}


def test_the_library_never_imports_the_commands():
    users = {where for (a, b), where in import_edges().items() if b == "commands" and
             a != "commands"}
    assert not users, users


@pytest.mark.parametrize("limit", ["module", "function"])
def test_no_module_over_350_lines_and_no_function_over_80(limit):
    long = []
    for relative, source in modules():
        if limit == "module" and source.count("\n") > MAX_MODULE_LINES:
            long.append((relative, source.count("\n")))
        for node in ast.walk(ast.parse(source)) if limit == "function" else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append((relative, node.name, length))
    assert not long, long


def test_the_meta_is_read_through_the_checkpoint_package_alone():
    raw = re.compile(r"meta(\.get\(|\[[\"']|\.raw\b|\._raw\b)")
    readers = ["%s:%d" % (relative, number) for relative, source in modules()
               if not relative.startswith("checkpoint" + os.sep)
               for number, line in enumerate(source.splitlines(), 1) if raw.search(line)]
    assert not readers, readers
