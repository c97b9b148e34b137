"""Architecture checks (issue 14): the layer contracts and four ratchets over today's debt.

- the import-linter contracts in pyproject.toml ([tool.importlinter]) must be kept;
- a. no import cycle between trainctl_tui modules, counting imports inside functions;
- b. no module takes another module's private (``_name``) names;
- c. no module over 800 lines, except data tables named in DATA_TABLES;
- d. a backend's name ("aws", "runpod", "ssh", "slurm") appears in code only inside that
  backend's module(s) and the registry.

Today's violations of a-d are listed in tests/architecture_debt.toml, today's exceptions to the
target contracts in their ignore_imports. A violation that is not listed fails the test, and
so does a listed one that is gone: the lists only shrink. After fixing some, or after a merge,
rewrite both with

    python tests/test_architecture.py --refresh

and review `git diff`: it may only remove lines (``--print-debt`` prints the debt file alone).
"""

from __future__ import annotations

import ast
import fnmatch
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "trainctl_tui"
DEBT_FILE = Path(__file__).with_name("architecture_debt.toml")

MAX_LINES = 800
# Modules that are data tables (allowed over MAX_LINES). None today.
DATA_TABLES: set[str] = set()

# Where each backend's name may appear as code: its own module(s), today's and the target's.
BACKEND_HOMES = {
    "aws": ["trainctl_tui/backends/aws/*"],
    "runpod": ["trainctl_tui/backends/runpod/*"],
    # "ssh" is also the protocol remote/ speaks for every backend that reaches its machines
    # by ssh (RunPod pods, EC2's fallback shell); importing the ssh backend itself is what
    # the backends-independent contract forbids.
    "ssh": ["trainctl_tui/backends/*"],
    "slurm": ["trainctl_tui/backends/slurm/*"],
}
# The registry may name every backend.
REGISTRY = ["trainctl_tui/backends/registry.py", "trainctl_tui/core/backend_table.py"]
# Keyword arguments whose string value is text for people (argparse, Textual widgets).
PROSE_KEYWORDS = {"help", "description", "epilog", "usage", "title", "placeholder", "tooltip"}


# --- reading the package ------------------------------------------------------------------


def read_package(root: Path = ROOT, package: str = PACKAGE) -> dict[str, str]:
    """{relative posix path: source} of every .py file of the package."""
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((root / package).rglob("*.py"))
    }


def module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve_from(path: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement names."""
    if not node.level:
        return node.module or ""
    parts = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        parts = parts[:-1]  # a module's relative imports start from its package
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def known_prefix(name: str, modules: set[str]) -> str | None:
    """The longest prefix of a dotted name that is one of ours (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def imports(path: str, tree: ast.AST, modules: set[str]):
    """(imported module, names taken from it) for every import of one of our modules,
    at any depth (inside functions, under TYPE_CHECKING), the way grimp counts them."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if target := known_prefix(alias.name, modules):
                    yield target, ()
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(path, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # from pkg import submodule
                    yield f"{base}.{alias.name}", ()
                elif target := known_prefix(base, modules):
                    yield target, (alias.name,)


def import_graph(files: dict[str, str]) -> dict[str, set[str]]:
    modules = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path, source in files.items():
        me = module_name(path)
        for target, _ in imports(path, ast.parse(source), modules):
            if target != me:
                graph[me].add(target)
    return graph


# --- a. import cycles ---------------------------------------------------------------------


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def cycle_edges(files: dict[str, str]) -> set[str]:
    """Every import edge that lies on a cycle, as "a -> b". Removing imports only ever shrinks
    this set, so it works as a ratchet where a list of cycles would not (a cycle can split)."""
    graph = import_graph(files)
    found = set()
    for group in strongly_connected(graph):
        members = set(group)
        found |= {f"{a} -> {b}" for a in group for b in graph[a] & members}
    return found


# --- b. private names --------------------------------------------------------------------


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := dotted(node.value)):
        return f"{base}.{node.attr}"
    return None


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_privates(tree: ast.AST) -> set[str]:
    """The private names a module defines: functions, classes, methods, variables and
    attributes it assigns (``self._x = ...``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if is_private(n)}


def private_imports(files: dict[str, str]) -> set[str]:
    """"importer -> module._name" for each private name of one of our modules that another
    takes: ``from module import _name``, ``module._name`` on an imported module, and
    ``obj._name`` (obj not self or cls) where only other modules define ``_name``, e.g. a
    private method called on another module's object (``service._start_runner(...)``)."""
    modules = {module_name(p) for p in files}
    trees = {module_name(p): ast.parse(source) for p, source in files.items()}
    defined = {m: defined_privates(tree) for m, tree in trees.items()}
    found = set()
    for path in files:
        me, tree = module_name(path), trees[module_name(path)]
        bound: dict[str, str] = {}  # local dotted name -> our module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in modules:
                        bound[alias.asname] = alias.name
                    elif not alias.asname:
                        parts = alias.name.split(".")
                        for n in range(1, len(parts) + 1):
                            if ".".join(parts[:n]) in modules:
                                bound[".".join(parts[:n])] = ".".join(parts[:n])
            elif isinstance(node, ast.ImportFrom):
                base = resolve_from(path, node)
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        for target, names in imports(path, tree, modules):
            found |= {f"{me} -> {target}.{n}" for n in names if is_private(n) and target != me}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
                continue
            if target := bound.get(dotted(node.value) or ""):
                if target != me:
                    found.add(f"{me} -> {target}.{node.attr}")
            elif dotted(node.value) not in ("self", "cls") and node.attr not in defined[me]:
                owners = sorted(m for m in modules if node.attr in defined[m])
                if owners:
                    found.add(f"{me} -> {'|'.join(owners)}.{node.attr}")
    return found


# --- c. long modules ---------------------------------------------------------------------


def long_modules(files: dict[str, str], limit: int = MAX_LINES) -> dict[str, int]:
    """{path: lines} of modules over the limit, data tables aside."""
    return {
        path: n
        for path, source in files.items()
        if (n := len(source.splitlines())) > limit and path not in DATA_TABLES
    }


# --- d. backend names outside their backend ----------------------------------------------


def prose_strings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are text for people, not code: docstrings and values of
    help=/description=/... keyword arguments (argparse help, widget titles)."""
    prose = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                prose.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in PROSE_KEYWORDS:
            prose |= {id(n) for n in ast.walk(node.value) if isinstance(n, ast.Constant)}
    return prose


def code_words(tree: ast.AST) -> list[str]:
    """The lower-cased words of every identifier and every string that is code, split on
    anything but letters and digits. Comments are not in the AST. A string is text for people,
    not code, when it is a docstring, a help=/description=/... value, or contains whitespace
    (messages, labels, group titles): keys, prefixes and argv items ("aws:", "runpod", "ssh")
    have none. A shell command written as one string ("aws s3 cp") therefore goes unseen."""
    prose = prose_strings(tree)
    texts: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            texts.append(node.id)
        elif isinstance(node, ast.Attribute):
            texts.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            texts.append(node.name)
        elif isinstance(node, ast.arg):
            texts.append(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            texts.append(node.arg)
        elif isinstance(node, ast.alias):
            texts += [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom) and node.module:
            texts.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in prose and not re.search(r"\s", node.value):
                texts.append(node.value)
    return [w.lower() for t in texts for w in re.split(r"[^A-Za-z0-9]+", t) if w]


def backend_words(files: dict[str, str]) -> dict[str, Counter]:
    """{path: Counter(word: occurrences)} of backend names used as code outside their homes.
    A word matches a backend when it starts with its name ("AwsProvider", "sshd")."""
    found: dict[str, Counter] = {}
    for path, source in files.items():
        if any(fnmatch.fnmatch(path, pattern) for pattern in REGISTRY):
            continue
        counts = Counter(
            backend
            for word in code_words(ast.parse(source))
            for backend, homes in BACKEND_HOMES.items()
            if word.startswith(backend)
            and not any(fnmatch.fnmatch(path, pattern) for pattern in homes)
        )
        if counts:
            found[path] = counts
    return found


def backend_word_pairs(found: dict[str, Counter]) -> set[str]:
    return {f"{path}: {word}" for path, counts in found.items() for word in counts}


# --- the ratchet ---------------------------------------------------------------------------


def ratchet(check: str, found: set[str], listed: set[str]) -> list[str]:
    """Messages for new violations and for listed ones that are gone."""
    problems = []
    if new := sorted(found - listed):
        problems.append(f"{check}: new violations (fix them; {DEBT_FILE.name} only shrinks):\n"
                        + "\n".join(f"  {v}" for v in new))
    if gone := sorted(listed - found):
        problems.append(f"{check}: fixed, so remove them from {DEBT_FILE.name}:\n"
                        + "\n".join(f"  {v}" for v in gone))
    return problems


def current_debt(files: dict[str, str]) -> dict[str, set[str]]:
    return {
        "cycle_edges": cycle_edges(files),
        "private_imports": private_imports(files),
        "long_modules": set(long_modules(files)),
        "backend_words": backend_word_pairs(backend_words(files)),
    }


def listed_debt() -> dict[str, set[str]]:
    data = tomllib.loads(DEBT_FILE.read_text(encoding="utf-8"))
    debt = {key: set(data.get(key, [])) for key in ("cycle_edges", "private_imports",
                                                       "long_modules")}
    debt["backend_words"] = {
        f"{path}: {word}" for path, words in data.get("backend_words", {}).items()
        for word in words
    }
    return debt


def render_debt(files: dict[str, str]) -> str:
    """The debt file's text for the code as it is now."""
    graph = import_graph(files)
    cycles, privates = cycle_edges(files), private_imports(files)
    lines = [
        "# Today's violations of the architecture checks in tests/test_architecture.py (issue 14).",
        "# This list may only shrink. Written by `python tests/test_architecture.py --refresh`",
        "# (which also rewrites the ignore_imports of the contracts in pyproject.toml).",
        "",
        "# a. import edges on a cycle (imports inside functions count). The cycles:",
    ]
    lines += [f"#   {{{', '.join(group)}}}" for group in strongly_connected(graph)]
    lines += ["cycle_edges = ["] + [f'  "{e}",' for e in sorted(cycles)] + ["]", ""]
    lines += ["# b. private names taken from another module", "private_imports = ["]
    lines += [f'  "{p}",' for p in sorted(privates)] + ["]", ""]
    lines += [f"# c. modules over {MAX_LINES} lines", "long_modules = ["]
    lines += [f'  "{p}",  # {n} lines' for p, n in sorted(long_modules(files).items())]
    lines += ["]", "", "# d. backend names used as code outside their backend and the registry",
              "[backend_words]"]
    for path, counts in sorted(backend_words(files).items()):
        words = ", ".join(f'"{w}"' for w in sorted(counts))
        detail = ", ".join(f"{w} {n}" for w, n in sorted(counts.items()))
        lines.append(f'"{path}" = [{words}]  # {detail}')
    return "\n".join(lines) + "\n"


# --- today's exceptions to the import-linter contracts --------------------------------------


def contracts(pyproject_text: str) -> list[dict]:
    return tomllib.loads(pyproject_text)["tool"]["importlinter"]["contracts"]


def contract_exceptions(contract: dict, graph: dict[str, set[str]]) -> set[str]:
    """The direct imports that break a contract, i.e. what its ignore_imports must list. For
    the contract types with ignore_imports here: forbidden with allow_indirect_imports, layers
    (every import from a layer up, or across a "|" layer) and independence (direct imports)."""

    def owner(module: str, candidates) -> str | None:
        return next((c for c in candidates if module == c or module.startswith(c + ".")), None)

    edges = [(a, b) for a in graph for b in graph[a]]
    found = set()
    if contract["type"] == "forbidden":
        assert contract.get("allow_indirect_imports"), "only direct imports are listed here"
        found = {(a, b) for a, b in edges if owner(a, contract["source_modules"])
                 and owner(b, contract["forbidden_modules"])}
    elif contract["type"] == "layers":
        layers = [[m.strip() for m in re.split(r"[|:]", layer)] for layer in contract["layers"]]
        level = {m: n for n, layer in enumerate(layers) for m in layer}
        independent = {m for layer in contract["layers"] if "|" in layer
                       for m in re.split(r"[|]", layer.replace(" ", ""))}
        for a, b in edges:
            la, lb = owner(a, level), owner(b, level)
            if la and lb and (level[la] > level[lb] or (
                    la != lb and level[la] == level[lb] and la in independent)):
                found.add((a, b))
    elif contract["type"] == "independence":
        found = {(a, b) for a, b in edges if owner(a, contract["modules"])
                 and owner(b, contract["modules"])
                 and owner(a, contract["modules"]) != owner(b, contract["modules"])}
    return {f"{a} -> {b}" for a, b in found}


def rewrite_ignores(pyproject_text: str, files: dict[str, str] | None = None) -> str:
    """pyproject.toml with each contract's ignore_imports set to today's exceptions. Only
    contracts that already have ignore_imports are touched: the others must stay kept."""
    graph = import_graph(files or read_package())
    by_id = {c["id"]: c for c in contracts(pyproject_text)}
    marker = "[[tool.importlinter.contracts]]"
    head, *blocks = pyproject_text.split(marker)
    for n, block in enumerate(blocks):
        contract = by_id[re.search(r'^id = "([^"]+)"', block, re.M).group(1)]
        if "ignore_imports" in contract:
            lines = "".join(f'  "{e}",\n' for e in sorted(contract_exceptions(contract, graph)))
            new = f"ignore_imports = [\n{lines}]\n"
            blocks[n] = re.sub(r"^ignore_imports = \[.*?\]\n", lambda _, new=new: new, block,
                               flags=re.M | re.S)
    return marker.join([head, *blocks])


# --- the tests of trainctl_tui -------------------------------------------------------------


def test_import_linter_contracts():
    script = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(script) if script.exists() else shutil.which("lint-imports") or "lint-imports",
         "--no-cache"],
        cwd=ROOT,  # lint-imports reads [tool.importlinter] from ./pyproject.toml
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_debt_only_shrinks():
    found, listed = current_debt(read_package()), listed_debt()
    problems = [m for key in found for m in ratchet(key, found[key], listed[key])]
    assert not problems, "\n\n".join(problems) + (
        "\n\nAfter fixing debt, refresh the list: `python tests/test_architecture.py --refresh`."
    )


def test_ignore_imports_are_todays_exceptions():
    """--refresh would write exactly the ignore_imports pyproject.toml has (so it can be
    trusted after a merge); lint-imports itself fails on a new or on a stale exception."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    graph = import_graph(read_package())
    for contract in contracts(text):
        if "ignore_imports" in contract:
            assert set(contract["ignore_imports"]) == contract_exceptions(contract, graph), (
                f"{contract['id']}: run `python tests/test_architecture.py --refresh`")


def test_our_import_graph_is_grimps():
    """grimp (import-linter) and our AST walk see the same imports, in-function ones included."""
    import grimp  # comes with import-linter
    theirs = grimp.build_graph(PACKAGE, cache_dir=None)
    ours = import_graph(read_package())
    assert set(ours) == set(theirs.modules)
    for module in ours:
        assert ours[module] == theirs.find_modules_directly_imported_by(module), module


# --- the checkers on small made-up packages ------------------------------------------------


def test_cycle_found_through_an_import_inside_a_function():
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def f():\n    from .c import x\n",
        "pkg/c.py": "def g():\n    import pkg.a\n",
        "pkg/d.py": "from pkg.a import thing\n",
    }
    assert strongly_connected(import_graph(files)) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert cycle_edges(files) == {"pkg.a -> pkg.b", "pkg.b -> pkg.c", "pkg.c -> pkg.a"}
    files["pkg/c.py"] = "def g():\n    pass\n"
    assert cycle_edges(files) == set()


def test_relative_imports_resolve_from_the_package():
    files = {
        "pkg/__init__.py": "from .sub import deep\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "from .. import top\nfrom ..top import name\n",
        "pkg/top.py": "",
    }
    assert import_graph(files) == {
        "pkg": {"pkg.sub.deep"}, "pkg.sub": set(), "pkg.sub.deep": {"pkg.top"}, "pkg.top": set(),
    }


def test_private_names_taken_from_another_module():
    files = {
        "pkg/__init__.py": "",
        "pkg/scan.py": "def _temp(): pass\ndef _own(): pass\nx = _own()\n",
        "pkg/ssh.py": "_backoff = 1\n__all__ = []\nclass S:\n    def _start(self): pass\n",
        "pkg/user.py": (
            "from .scan import _temp, public\n"
            "from . import ssh\n"
            "import pkg.scan as sc\n"
            "from .ssh import __all__\n"
            "class Mine:\n"
            "    def _own(self): return self._start, os._exit\n"
            "def f(obj, service):\n"
            "    service._start()\n"
            "    return ssh._backoff, sc._other, obj._private, obj._own\n"
        ),
    }
    assert private_imports(files) == {
        "pkg.user -> pkg.scan._temp", "pkg.user -> pkg.ssh._backoff",
        "pkg.user -> pkg.scan._other", "pkg.user -> pkg.ssh._start",
    }


def test_long_modules(monkeypatch):
    files = {"pkg/big.py": "x = 1\n" * 801, "pkg/ok.py": "x = 1\n" * 800,
             "pkg/table.py": "x = 1\n" * 900}
    monkeypatch.setattr(sys.modules[__name__], "DATA_TABLES", {"pkg/table.py"})
    assert long_modules(files) == {"pkg/big.py": 801}


def test_backend_words_outside_their_backend():
    source = (
        '"""Start an AWS instance or an ssh host."""\n'
        "import argparse\n"
        "from .backends.aws.api import client  # talks to aws\n"
        "def launch(kind, parser: argparse.ArgumentParser):\n"
        '    """Docstrings may say RunPod."""\n'
        '    parser.add_argument("--host", help="an ssh host from ~/.ssh/config")\n'
        '    if kind == "runpod":\n'
        "        return RunPodProvider()\n"
        '    raise SystemExit(f"no such place: {kind}; say aws or ssh")\n'
        'ARGV = ["ssh", "-o", "BatchMode=yes"]\n'
    )
    files = {
        "trainctl_tui/service.py": source,
        "trainctl_tui/backends/runpod/provider.py": "RUNPOD = 'runpod'\nAWS = 'aws'\n",
        "trainctl_tui/backends/registry.py": "NAMES = ['aws', 'runpod', 'ssh', 'slurm']\n",
    }
    found = backend_words(files)
    assert found == {
        "trainctl_tui/service.py": Counter({"aws": 1, "runpod": 2, "ssh": 1}),
        "trainctl_tui/backends/runpod/provider.py": Counter({"aws": 2}),
    }


def test_refresh_rewrites_ignore_imports_to_todays_exceptions():
    files = {
        "pkg/__init__.py": "",
        "pkg/ui.py": "",
        "pkg/app.py": "def f():\n    from . import ui\n",
        "pkg/core.py": "import pkg.app\n",
        "pkg/aws.py": "",
        "pkg/ssh.py": "from .aws import x\n",
    }
    pyproject = (
        "[tool.importlinter]\nroot_package = \"pkg\"\n\n"
        "[[tool.importlinter.contracts]]\nid = \"layers\"\ntype = \"layers\"\n"
        "layers = [\"pkg.ui\", \"pkg.app\", \"pkg.core\"]\n"
        "ignore_imports = [\"pkg.core -> pkg.gone\"]\n\n"
        "[[tool.importlinter.contracts]]\nid = \"kept\"\ntype = \"independence\"\n"
        "modules = [\"pkg.aws\", \"pkg.ssh\"]\n"
    )
    layers, kept = contracts(rewrite_ignores(pyproject, files))
    assert layers["ignore_imports"] == ["pkg.app -> pkg.ui", "pkg.core -> pkg.app"]
    assert "ignore_imports" not in kept  # a contract kept today gets no exceptions
    assert contract_exceptions(kept, import_graph(files)) == {"pkg.ssh -> pkg.aws"}


def test_ratchet_fails_on_new_and_on_fixed_but_listed():
    assert ratchet("x", {"a", "b"}, {"a", "b"}) == []
    new, = ratchet("x", {"a", "b"}, {"a"})
    assert "new violations" in new and "  b" in new
    gone, = ratchet("x", {"a"}, {"a", "b"})
    assert "remove them" in gone and "  b" in gone


if __name__ == "__main__":
    if sys.argv[1:] == ["--print-debt"]:
        sys.stdout.write(render_debt(read_package()))
    elif sys.argv[1:] == ["--refresh"]:
        DEBT_FILE.write_text(render_debt(read_package()), encoding="utf-8")
        pyproject = ROOT / "pyproject.toml"
        pyproject.write_text(rewrite_ignores(pyproject.read_text(encoding="utf-8")),
                             encoding="utf-8")
        print(f"rewrote {DEBT_FILE.relative_to(ROOT)} and the ignore_imports of pyproject.toml;"
              " check with `git diff` that they only lost lines")
    else:
        sys.exit("usage: python tests/test_architecture.py --print-debt | --refresh")
