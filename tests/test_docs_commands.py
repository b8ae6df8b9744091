"""Every command the documentation shows runs against the code as it is.

Collects, from ``README.md`` and ``docs/*.md`` (fenced shell blocks and inline code), each
``python -m experiments.<module> ...`` command (also ``.venv/bin/python -m``, ``torchrun ... -m``) and
each ``make <target> ...`` line, and checks that

- the module exists and can be run with ``python -m`` (``importlib.util.find_spec``);
- every ``--flag`` written after it appears in that module's ``--help`` (one subprocess per module);
- every ``make`` target is a target of the Makefile, and the flags in its ``ARGS="..."`` are accepted by
  the command whose recipe line takes ``$(ARGS)``;
- a flag quoted on its own in inline code (```--samples```) belongs to one of the documented commands.

Placeholders are values, never flags (``RUN/last.pt``, ``runs/<run>/best.pt``, ``[--pixel-size 0.031]``
is checked as ``--pixel-size``); ``--network.<field>`` or ``--network.*`` only asks that some flag starts
with ``--network.``. Line continuations (a trailing backslash) are joined first.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAKEFILE = ROOT / "Makefile"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
# "-m experiments.x.y"; a placeholder such as "experiments.<name>" is no module.
MODULE = re.compile(r"(?:^|\s)-m\s+(experiments(?:\.\w+)*)(?P<placeholder>\.(?:<|\*|\.\.))?")
MAKE = re.compile(r"(?:^|[\s;&|(])make\s+(?P<rest>.*)$")
FLAG = re.compile(r"--[A-Za-z][\w-]*(?:\.[A-Za-z_][\w-]*)*(?P<prefix>\.(?=[<*]|\.\.))?")
SEPARATORS = re.compile(r"\s(?:&&|\|\||;|\|)\s|;$")
NOT_SHELL = {"python", "py", "pycon", "yaml", "json", "toml", "text", "txt", "markdown", "md"}


@dataclass(frozen=True)
class Command:
    doc: str  # the file, relative to the repository
    line: int  # where the command starts in it
    text: str  # the command as written (continuations joined)
    program: str  # "experiments.train", or "make"
    flags: tuple[tuple[str, bool], ...]  # (flag, is a prefix such as --network.)
    target: str = ""  # make only
    args_flags: tuple[tuple[str, bool], ...] = ()  # make only: the flags of ARGS="..."

    @property
    def id(self) -> str:
        what = f"make {self.target}" if self.program == "make" else self.program
        return f"{self.doc}:{self.line}:{what}"


def _flags(text: str) -> tuple[tuple[str, bool], ...]:
    found = []
    for token in text.split():
        token = token.strip("[]()\"'`,;")
        match = FLAG.match(token)
        if match:
            prefix = bool(match.group("prefix"))
            found.append((match.group(0)[:-1] if prefix else match.group(0), prefix))
    return tuple(found)


def _snippets(text: str):
    """(line number, code) of each shell line of a fenced block and of each inline code span."""
    spans = []
    for block in FENCE.finditer(text):
        info = block.group("info").strip().lower().split()
        if info and info[0] in NOT_SHELL:
            spans.append((block.start(), block.end()))
            continue
        start_line = text.count("\n", 0, block.start("body")) + 1
        pending, pending_line = "", 0
        for offset, raw in enumerate(block.group("body").splitlines()):
            line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()  # shell comments
            if not pending:
                pending_line = start_line + offset
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            pending += line
            if pending.strip():
                yield pending_line, " ".join(pending.split())
            pending = ""
        if pending.strip():
            yield pending_line, " ".join(pending.split())
        spans.append((block.start(), block.end()))
    prose, last = [], 0
    for start, end in spans:
        prose.append(text[last:start] + "\n" * text.count("\n", start, end))  # keeps line numbers
        last = end
    prose.append(text[last:])
    outside = "".join(prose)
    for span in INLINE.finditer(outside):
        yield outside.count("\n", 0, span.start()) + 1, " ".join(span.group(1).replace("\\\n", " ").split())


def _commands_in(snippet: str):
    """(program, its part of the snippet) for each command in one line of code."""
    for part in SEPARATORS.split(snippet):
        modules = list(MODULE.finditer(part))
        for index, match in enumerate(modules):
            if match.group("placeholder"):
                continue
            end = modules[index + 1].start() if index + 1 < len(modules) else len(part)
            yield match.group(1), part[match.end(1):end]
        if not modules:
            make = MAKE.search(part)
            if make:
                yield "make", make.group("rest")


def _make_command(doc: str, line: int, snippet: str, rest: str) -> Command | None:
    args = re.search(r"\bARGS=(?:\"([^\"]*)\"|'([^']*)'|(\S+))", rest)
    args_text = next((group for group in args.groups() if group is not None), "") if args else ""
    rest = rest[:args.start()] + rest[args.end():] if args else rest
    target = next((token for token in rest.split() if "=" not in token and not token.startswith("-")), None)
    if target is None or not re.fullmatch(r"[\w.-]+", target):
        return None  # prose such as "make sure"
    return Command(doc, line, snippet, "make", (), target, _flags(args_text))


def collect() -> list[Command]:
    commands = []
    for path in DOCS:
        doc = path.relative_to(ROOT).as_posix()
        for line, snippet in _snippets(path.read_text(encoding="utf-8")):
            found = list(_commands_in(snippet))
            for program, rest in found:
                if program == "make":
                    command = _make_command(doc, line, snippet, rest)
                    if command is not None:
                        commands.append(command)
                else:
                    commands.append(Command(doc, line, snippet, program, _flags(rest)))
            if not found and snippet.startswith("--"):
                commands.append(Command(doc, line, snippet, "", _flags(snippet)))
    return commands


COMMANDS = collect()
MODULE_COMMANDS = [c for c in COMMANDS if c.program.startswith("experiments")]
MAKE_COMMANDS = [c for c in COMMANDS if c.program == "make"]
LONE_FLAGS = [c for c in COMMANDS if c.program == ""]


# --------------------------------------------------------------------------- the Makefile
def _makefile() -> tuple[set[str], dict[str, list[str]], dict[str, str]]:
    """(targets, recipe lines per target, variables: the first definition of each)."""
    targets, recipes, variables, current = set(), {}, {}, []
    for raw in MAKEFILE.read_text().splitlines():
        if raw.startswith("\t"):
            for target in current:
                recipes.setdefault(target, []).append(raw.strip())
            continue
        line = raw.split("#", 1)[0].rstrip()
        phony = re.match(r"^\.PHONY\s*:(.*)$", line)
        if phony:
            targets.update(phony.group(1).split())
            continue
        assignment = re.match(r"^(\w+)\s*(?::=|\?=|\+=|=)\s*(.*)$", line)
        if assignment:
            variables.setdefault(assignment.group(1), assignment.group(2))
            continue
        rule = re.match(r"^([^\s:#=$][^:=]*?)\s*:(?!=)", line)
        if rule:
            current = rule.group(1).split()
            targets.update(current)
        elif line.strip():
            current = []
    return targets, recipes, variables


MAKE_TARGETS, MAKE_RECIPES, MAKE_VARIABLES = _makefile()


def _expand(text: str, depth: int = 3) -> str:
    for _ in range(depth):
        text = re.sub(r"\$\((\w+)\)", lambda m: MAKE_VARIABLES.get(m.group(1), m.group(0)) if m.group(1) != "ARGS" else m.group(0), text)
    return text


def args_module(target: str) -> str | None:
    """The experiments module of the target's recipe line that takes ``$(ARGS)``."""
    for line in MAKE_RECIPES.get(target, []):
        if "$(ARGS)" in line:
            match = MODULE.search(_expand(line))
            if match:
                return match.group(1)
    return None


# --------------------------------------------------------------------------- --help, once per module
def _documented_modules() -> list[str]:
    modules = {c.program for c in MODULE_COMMANDS}
    for target in MAKE_TARGETS:
        module = args_module(target)
        if module:
            modules.add(module)
    return sorted(modules)


def _run_help(module: str) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "PYTHON_COLORS": "0"}
    try:
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return -1, f"{module} --help did not finish in 600 s"
    return done.returncode, done.stdout + done.stderr


@functools.lru_cache(maxsize=None)
def helps() -> dict[str, tuple[int, str]]:
    """``--help`` of every documented module that exists, all started at once."""
    modules = [m for m in _documented_modules() if _runnable(m)]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(modules, pool.map(_run_help, modules)))


def _help_of(module: str) -> str:
    returncode, text = helps()[module]
    assert returncode == 0, f"python -m {module} --help failed (exit status {returncode}):\n{text[-3000:]}"
    return text


def _accepts(help_text: str, flag: str, prefix: bool) -> bool:
    if prefix:
        return re.search(rf"(?<![\w.-]){re.escape(flag)}\.[A-Za-z_]", help_text) is not None
    return re.search(rf"(?<![\w.-]){re.escape(flag)}(?![\w.-])", help_text) is not None


def _shown(flag: str, prefix: bool) -> str:
    return flag + ".*" if prefix else flag


@functools.lru_cache(maxsize=None)
def _runnable(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    # A package runs with -m only through its __main__.
    return spec.submodule_search_locations is None or importlib.util.find_spec(module + ".__main__") is not None


# --------------------------------------------------------------------------- the tests
def test_the_documentation_is_collected():
    programs = {c.program for c in MODULE_COMMANDS}
    assert {"experiments.train", "experiments.evaluate", "experiments.predict", "experiments.export"} <= programs
    assert {"demo", "test", "reproduce-mse", "reproduce-l1", "export"} <= {c.target for c in MAKE_COMMANDS}
    assert {"README.md", "docs/prediction.md", "docs/trust.md", "docs/export.md", "docs/benchmarks.md",
            "docs/architecture.md"} <= {p.relative_to(ROOT).as_posix() for p in DOCS}


@pytest.mark.parametrize("command", MODULE_COMMANDS, ids=lambda c: c.id)
def test_documented_module_exists(command: Command):
    assert _runnable(command.program), (
        f"{command.doc}:{command.line}: `{command.text}`: no module {command.program} to run with python -m")


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in MODULE_COMMANDS if c.flags], ids=lambda c: c.id)
def test_documented_flags_are_accepted(command: Command):
    if not _runnable(command.program):
        pytest.fail(f"{command.doc}:{command.line}: no module {command.program}")
    help_text = _help_of(command.program)
    missing = [_shown(flag, prefix) for flag, prefix in command.flags if not _accepts(help_text, flag, prefix)]
    assert not missing, (
        f"{command.doc}:{command.line}: `{command.text}`: python -m {command.program} does not accept "
        f"{', '.join(missing)}")


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=lambda c: c.id)
def test_documented_make_target_exists(command: Command):
    assert command.target in MAKE_TARGETS, (
        f"{command.doc}:{command.line}: `{command.text}`: the Makefile has no target {command.target!r} "
        f"(it has {', '.join(sorted(MAKE_TARGETS))})")


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in MAKE_COMMANDS if c.args_flags], ids=lambda c: c.id)
def test_documented_make_args_are_accepted(command: Command):
    if command.target not in MAKE_TARGETS:
        pytest.skip(f"no target {command.target!r}: test_documented_make_target_exists reports it")
    module = args_module(command.target)
    assert module is not None, (
        f"{command.doc}:{command.line}: `{command.text}`: make {command.target} passes ARGS to no command")
    help_text = _help_of(module)
    missing = [_shown(f, p) for f, p in command.args_flags if not _accepts(help_text, f, p)]
    assert not missing, (
        f"{command.doc}:{command.line}: `{command.text}`: ARGS go to python -m {module}, which does not "
        f"accept {', '.join(missing)}")


@pytest.mark.slow
@pytest.mark.parametrize("command", LONE_FLAGS, ids=lambda c: f"{c.doc}:{c.line}:{c.text}")
def test_quoted_flags_belong_to_a_documented_command(command: Command):
    texts = {module: text for module, (code, text) in helps().items() if code == 0}
    failed = sorted(module for module, (code, _) in helps().items() if code != 0)
    missing = [_shown(f, p) for f, p in command.flags if not any(_accepts(t, f, p) for t in texts.values())]
    assert not missing, (
        f"{command.doc}:{command.line}: `{command.text}`: {', '.join(missing)} is a flag of no documented command"
        + (f" (--help failed for {', '.join(failed)})" if failed else ""))


def test_every_test_the_docs_name_exists():
    """docs/architecture.md says which test holds which number: each `file::test` it names (and each
    `::test` after one, in the same file) is a test of that file."""
    import ast

    text = (ROOT / "docs" / "architecture.md").read_text()
    named, current = [], None
    for file, test, after in re.findall(r"`(?:tests/)?(test_\w+\.py)(?:::(test_\w+))?|`::(test_\w+)", text):
        test = test or after
        current = file or current
        if test:
            named.append((current, test))
    assert len(named) > 40
    missing = []
    for file, test in named:
        tree = ast.parse((ROOT / "tests" / file).read_text())
        if test not in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}:
            missing.append(f"{file}::{test}")
    assert missing == []


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings: lower case, punctuation dropped, spaces to '-'."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


def test_every_link_between_the_docs_reaches_its_file_and_heading():
    broken = []
    for doc in DOCS + sorted((ROOT / "pretrained").glob("*/MODEL_CARD.md")):
        for target, anchor in re.findall(r"\]\(([^)#\s:]*)(?:#([\w\-]+))?\)", doc.read_text()):
            path = (doc.parent / target) if target else doc
            if not path.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} does not exist")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{doc.relative_to(ROOT)}: {target}#{anchor} names no heading")
    assert broken == []
