"""The package layout: `ddpm/` and `unet/` never import `experiments/`, the product (inference, trust,
prediction, export, napari) never reaches evaluation, training or the studies (directly or through another
module), the data layer never imports the networks, no module imports itself
back, and the rooms (`ddpm`, `unet`, each sub-package and each top-level module of `experiments`) import one
another in one direction only.

The import graph is read from the source (every ``import`` statement, also those inside functions, since a
deferred import still closes a circle when it runs), not by importing anything.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ddpm", "unet", "experiments")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``path`` imports: ``from a.b import c`` counts as ``a.b.c`` when that is a
    module, else as ``a.b``."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the directed graph as a path that ends where it starts, or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_the_imports_it_must_see():
    graph = import_graph()
    assert "experiments.training.trainer" in graph["experiments.train"]
    assert "ddpm.diffusion" in graph["experiments.config.schema"]


def test_the_import_graph_has_no_circle():
    assert find_cycle(import_graph()) is None


def room(module: str) -> str:
    """The room a module lives in: ``ddpm``, ``unet``, or ``experiments.<sub-package or top-level module>``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "experiments" and len(parts) > 1 else parts[0]


def room_graph(graph: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Room -> the other rooms its modules import."""
    rooms: dict[str, set[str]] = {}
    for module, targets in (graph or import_graph()).items():
        rooms.setdefault(room(module), set()).update(room(target) for target in targets if room(target) != room(module))
    return rooms


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_room_graph_has_no_circle():
    rooms = room_graph()
    assert {"ddpm", "unet", "experiments.checkpoint", "experiments.inference", "experiments.evaluation"} <= set(rooms)
    assert find_cycle(rooms) is None


def test_the_room_graph_sees_a_planted_circle_of_rooms():
    graph = import_graph()
    graph["experiments.checkpoint"] = graph["experiments.checkpoint"] | {"experiments.training.trainer"}
    assert find_cycle(room_graph(graph)) is not None


# The product a user runs (prediction, export, the napari plugin, the trust measures they use) and the research
# package (evaluation against targets, studies, training) meet only where the research uses the product.
PRODUCT = ("experiments.inference", "experiments.trust", "experiments.napari_plugin", "experiments.predict",
           "experiments.export")


@pytest.mark.parametrize("product", PRODUCT)
def test_the_product_never_reaches_evaluation(product):
    # Evaluation samples through inference (experiments.inference.sampling) and scores with the trust measures;
    # the product reaching evaluation, even through a third room (figures, say), would make it depend on the
    # research code.
    graph = import_graph()
    reached = {module: sorted(target for target in reach(graph, module)
                              if room(target) in ("experiments.evaluation", "experiments.training", "experiments.studies"))
               for module in graph if room(module) == product}
    assert {module: targets for module, targets in reached.items() if targets} == {}


def test_reach_follows_imports_through_other_rooms():
    assert reach({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}


def test_ddpm_and_unet_never_import_experiments():
    offenders = {
        name: sorted(target for target in targets if target.split(".")[0] == "experiments")
        for name, targets in import_graph().items()
        if name.split(".")[0] in ("ddpm", "unet")
    }
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def test_ddpm_never_imports_unet():
    assert {name for name, targets in import_graph().items() if name.startswith("ddpm") and any(
        target.startswith("unet") for target in targets)} == set()


def _offenders(source: str, forbidden: str) -> dict[str, list[str]]:
    """Modules under package ``source`` that import anything under ``forbidden``, with what they import."""
    found = {
        name: sorted(target for target in targets if target == forbidden or target.startswith(f"{forbidden}."))
        for name, targets in import_graph().items()
        if name == source or name.startswith(f"{source}.")
    }
    return {name: targets for name, targets in found.items() if targets}


def test_inference_never_imports_evaluation():
    # Evaluation samples through inference (experiments.inference.sampling); the reverse would be a circle of rooms.
    assert _offenders("experiments.inference", "experiments.evaluation") == {}


def test_nothing_but_the_napari_plugin_imports_it():
    # The GUI sits on top: the commands and the library run without napari or Qt.
    users = {name for name, targets in import_graph().items() if not name.startswith("experiments.napari_plugin")
             and any(target.startswith("experiments.napari_plugin") for target in targets)}
    assert users == set()


@pytest.mark.parametrize("room_name", ["experiments.data", "experiments.pairs", "experiments.image_io",
                                       "experiments.microscope"])
def test_the_data_rooms_never_import_the_networks(room_name):
    assert _offenders(room_name, "unet") == {}


def test_the_data_rooms_stack_in_one_order():
    # data (layout, normalisation, tasks) <- image_io (users' files) <- pairs (training); data <- microscope.
    rooms = room_graph()
    assert rooms["experiments.data"] <= {"ddpm", "experiments.integrity"}
    assert "experiments.pairs" not in rooms["experiments.image_io"] | rooms["experiments.microscope"]
    assert "experiments.microscope" not in rooms["experiments.image_io"] | rooms["experiments.pairs"]


def test_the_room_rule_finder_sees_a_planted_import(monkeypatch):
    graph = import_graph()
    graph["experiments.inference.sampling"] = graph["experiments.inference.sampling"] | {"experiments.evaluation.loop"}
    monkeypatch.setitem(globals(), "import_graph", lambda: graph)
    assert _offenders("experiments.inference", "experiments.evaluation") == {
        "experiments.inference.sampling": ["experiments.evaluation.loop"]
    }


def test_the_settings_leaf_imports_nothing_of_the_project():
    assert import_graph()["ddpm.settings"] == set()


# Where the machines that wrote this project's records keep things; a committed file naming one of them holds
# a path of that machine, which means nothing on another one. (An example path in a command is written
# relative, or under a made-up root such as /data.)
MACHINE_PATH = re.compile(r"(?<![\w.~-])(/work/|/tmp/|/root/|/home/|/Users/|[A-Z]:\\\\Users\\\\)")


def committed_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True).stdout
        return [ROOT / name for name in listed.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file
        return [path for path in ROOT.rglob("*") if path.is_file() and ".git" not in path.parts]


def test_no_committed_file_holds_a_path_of_the_machine_that_wrote_it():
    checked = ("README.md", "Makefile", "pyproject.toml", "docs", "pretrained", "experiments", "ddpm", "unet")
    offenders = {}
    for path in committed_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] not in checked or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")  # binaries too (a checkpoint pickles strings)
        found = sorted({match.group(0) for match in MACHINE_PATH.finditer(text)})
        if found:
            offenders[str(relative)] = found
    assert offenders == {}


def test_the_machine_path_rule_sees_one():
    assert MACHINE_PATH.search('"checkpoint": "/work/main/runs/x/best.pt"')
    assert MACHINE_PATH.search("--out /tmp/l1.json")
    assert not MACHINE_PATH.search("DATA_DIR=/data/biosr make reproduce-l1") and not MACHINE_PATH.search("runs/tmp/x")
