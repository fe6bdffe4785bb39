"""The package's shape: one public namespace, imports going one way, a fast CLI."""

import ast
import functools
import os

import gitml
from tests.conftest import ROOT, run_python

# Lower layers never import higher ones.
LAYERS = [
    ("gitml.errors", "gitml.names", "gitml.exceptions", "gitml.yamlread", "gitml.version"),
    ("gitml.store",),
    ("gitml.runlog", "gitml.content", "gitml.data", "gitml.system_metrics"),
    ("gitml.content.service",),
    ("gitml.registry",),
    ("gitml.client", "gitml.search", "gitml.frame", "gitml.entities"),
    ("gitml.ops", "gitml.runviews", "gitml.sync", "gitml.purge", "gitml.report"),
    ("gitml.fluent", "gitml.artifacts", "gitml.tracking", "gitml.projects"),
    ("gitml.modelformat",),
    ("gitml.pyfunc",),
    ("gitml.models",),
    ("gitml.autologging",),
    (
        "gitml.sklearn",
        "gitml.pytorch",
        "gitml.xgboost",
        "gitml.lightgbm",
        "gitml.catboost",
        "gitml.statsmodels",
        "gitml.onnx",
        "gitml.keras",
        "gitml.transformers",
        "gitml.gitops",
        "gitml.sweeps",
        "gitml.optuna",
        "gitml.ray",
    ),
    ("gitml.flavors",),
    ("gitml.cli", "gitml.ui", "gitml.serving", "gitml.mlflow_plugin"),
]


def test_the_folders_are_the_layers():
    """``ls gitml/``, the layers above and docs/design.md's layer list name the same entries,
    in the same layers."""
    import re

    entries = {
        f"gitml.{n.removesuffix('.py')}"
        for n in os.listdir(os.path.join(ROOT, "gitml"))
        if (n.endswith(".py") and n not in ("__init__.py", "__main__.py"))
        or os.path.isfile(os.path.join(ROOT, "gitml", n, "__init__.py"))
    }
    layered = {p: level for level, prefixes in enumerate(LAYERS) for p in prefixes}
    assert entries == {p for p in layered if p.count(".") == 1}
    design = open(os.path.join(ROOT, "docs", "design.md")).read()
    block = design.split("The layers, bottom up;", 1)[1].split("```")[1]
    documented, level = {}, None
    for line in block.splitlines():
        found = re.match(r"(\d+)?\s+(gitml\.[\w.]+(?:, gitml\.[\w.]+)*)", line)
        if found:
            level = int(found.group(1)) if found.group(1) else level
            documented.update({name: level for name in found.group(2).split(", ")})
    assert documented == layered


def _layer(module: str) -> int | None:
    """The layer of the longest prefix naming ``module`` (``gitml.content.service`` sits above
    ``gitml.content``)."""
    found = [
        (len(p), level)
        for level, prefixes in enumerate(LAYERS)
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    return max(found)[1] if found else None


def test_public_namespace_is_complete():
    exported = set(gitml.__all__)
    for name in exported - {"__version__"}:
        assert getattr(gitml, name) is not None
    public_fluent = {
        n
        for n in dir(__import__("gitml.fluent", fromlist=["x"]))
        if not n.startswith("_") and callable(getattr(gitml.fluent, n))
    }
    missing = {
        n for n in public_fluent if n not in exported and n not in {"client", "run_of", "check_key", "annotations"}
    }
    missing -= {
        "Client",
        "Operations",
        "Experiment",
        "Metric",
        "Run",
        "RunStatus",
        "ViewType",
        "GitmlError",
        "InvalidInputError",
        "RunWriter",
        "atexit",
    }
    assert not missing, f"fluent functions missing from gitml.__all__: {missing}"


def test_the_typed_re_exports_match_the_lazy_ones():
    """``gitml/__init__.py`` imports each public name under ``TYPE_CHECKING`` (what editors and mypy
    see) from the module its ``_LAZY`` table loads it from at run time: the two lists stay one."""
    import ast

    tree = ast.parse(open(os.path.join(ROOT, "gitml", "__init__.py")).read())
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
    )
    typed = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    submodules = {name for name, module in typed.items() if module == "gitml"}
    assert {n: m for n, m in typed.items() if m != "gitml"} == gitml._LAZY
    assert submodules == gitml._SUBMODULES
    assert set(gitml.__all__) == set(gitml._LAZY) | gitml._SUBMODULES | {"__version__"}


# The package face (gitml/__init__.py: the public names, lazily) sits above every layer but the edge.
FACE_LEVEL = len(LAYERS) - 1
# A package's own face: its ``__init__`` names, where MLflow has them, things of a higher layer,
# imported when first used (as gitml/__init__.py does). It sits with the package face, between
# the last layer and the edge (PACKAGE_FACE_LEVEL); its submodules sit in the package's layer
# and, like every module below the edge, import none of its names.
# None is left: gitml.tracking and gitml.models were, and are face folders now, each in a layer
# above what it hands out (the run log is gitml.runlog, the model format gitml.modelformat).
PACKAGE_FACES: dict[str, str] = {}
PACKAGE_FACE_LEVEL = FACE_LEVEL - 0.5


def _imports_the_face(node: ast.AST) -> bool:
    """``import gitml`` or ``from gitml import NAME`` of a name of ``gitml/__init__.py`` (not a
    submodule: ``from gitml import fluent`` imports gitml.fluent)."""
    if isinstance(node, ast.Import):
        return any(a.name == "gitml" for a in node.names)
    if isinstance(node, ast.ImportFrom) and node.module == "gitml" and not node.level:
        return any(
            not os.path.exists(os.path.join(ROOT, "gitml", a.name + ".py"))
            and not os.path.isdir(os.path.join(ROOT, "gitml", a.name))
            for a in node.names
        )
    return False


def _imported(node: ast.AST) -> list[str]:
    """The modules an AST node imports: ``import``, ``from ... import`` (the submodules it names;
    the package itself where it takes a name of the package's ``__init__``), and
    ``importlib.import_module`` / ``__import__`` of a literal string."""
    if isinstance(node, ast.ImportFrom) and node.module:
        named = [f"{node.module}.{a.name}" for a in node.names]
        return named if all(n in _modules() for n in named) else [node.module] + named
    if isinstance(node, ast.Import):  # `import a.b.c as x` imports a.b.c
        return [a.name for a in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def test_no_import_circles():
    """No two modules import each other, however indirectly, counting every import (function-level,
    ``TYPE_CHECKING``, ``import_module`` strings); a package's own submodules importing it aside."""
    modules = _modules()

    def known(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, tree in modules.items():
        for node in ast.walk(tree):
            for target in _imported(node):
                found = known(target) if target.startswith("gitml") else None
                if found and found != module and not module.startswith(found + "."):
                    graph[module].add(found)
    circles, index, low, stack, on = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_imports_go_one_way():
    problems = []
    for module, tree in _modules().items():
        level = PACKAGE_FACE_LEVEL if module in PACKAGE_FACES else _layer(module)
        if level is None:
            continue
        for node in ast.walk(tree):  # every import: module, function, TYPE_CHECKING
            if level < FACE_LEVEL and _imports_the_face(node):
                problems.append(f"{module} imports the package face gitml")
            for target in _imported(node):
                other = PACKAGE_FACE_LEVEL if target in PACKAGE_FACES else _layer(target)
                if other is not None and other > level:
                    problems.append(f"{module} imports {target}")
    assert not problems, problems


def test_a_submodule_import_is_not_an_import_of_its_package_face():
    """``from gitml.models import signature`` imports the submodule (running the face, which
    loads nothing); ``from gitml.models import evaluate`` takes a name of the face, which
    only the layers above may do."""
    submodule, name = (ast.parse(f"from gitml.models import {n}").body[0] for n in ("signature", "evaluate"))
    assert _imported(submodule) == ["gitml.models.signature"]
    assert _imported(name) == ["gitml.models", "gitml.models.evaluate"]


def test_the_tracking_face_is_a_face_alone():
    """``gitml.tracking`` is MLflow's ``mlflow.tracking`` face and nothing else: its folder holds
    the ``__init__`` alone (the run log, below the client, is ``gitml.runlog``), and
    ``MlflowClient`` is the Client, looked up on first use."""
    folder = os.path.join(ROOT, "gitml", "tracking")
    assert sorted(n for n in os.listdir(folder) if n != "__pycache__") == ["__init__.py"]
    import gitml.tracking

    assert gitml.tracking.MlflowClient is gitml.Client
    with __import__("pytest").raises(AttributeError, match="no attribute 'Nope'"):
        gitml.tracking.Nope  # noqa: B018


def test_cli_help_does_not_import_pandas_or_dulwich(tmp_path):
    out = run_python(
        "import sys\nfrom gitml.cli.main import cli\n"
        "try:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('pandas' in sys.modules, 'dulwich' in sys.modules,\n"
        "      any(m in sys.modules for m in ('torch', 'sklearn', 'cloudpickle',\n"
        "                                     'gitml.models', 'gitml.modelformat', 'gitml.pyfunc')))",
        cwd=tmp_path,
    )
    assert out.stdout.strip().endswith("False False False")


# -- reach-through: a layer is used through its interface ------------------------------
# A unit is a subpackage (gitml.store, gitml.cli, ...) or a top-level module (gitml.client):
# its modules may share private names; nothing else may use them.
PRIVATE_ALLOWED = {
    "_load_pyfunc",  # MLflow's flavor-loader protocol: a flavor module's entry point by that name
    "_fields",
    "_asdict",
    "_replace",
    "_make",  # the public API of namedtuples
}
# The units that hold a git store and may read ``x.store``: the store itself, the layers
# that keep one (runlog, content, registry), and gitml.sync and gitml.purge, whose push,
# fetch and purge move refs and objects as git does (through the facade's
# ``Operations.store``, gitml.ops).
STORE_OWNERS = {
    "gitml.store",
    "gitml.runlog",
    "gitml.content",
    "gitml.registry",
    "gitml.ops",
    "gitml.sync",
    "gitml.purge",
}
# Other modules' ``.store`` reads, each with why.
STORE_READS_ALLOWED = {
    "gitml.mlflow_plugin.importer": "MLflow's own tracking store (its client's), read for its bulk metric call",
}
# `.tracker` read on something other than `self`, outside gitml.runlog: only here, and why.
TRACKER_ALLOWED = {
    "gitml.registry.audit": "reads the tracker of the Registry it audits (gitml.registry's own object)",
}


@functools.cache  # parsed once for the checks that read every module (a few seconds per parse here)
def _modules() -> dict[str, ast.Module]:
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "gitml")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                out[module] = ast.parse(open(path).read())
    return out


def _unit(module: str, packages: set[str]) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if ".".join(parts[:2]) in packages else module


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__") and name not in PRIVATE_ALLOWED


def _private_names(tree: ast.Module) -> set[str]:
    """The private names a module defines: functions, classes, attributes it assigns, globals."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return {n for n in names if _is_private(n)}


def reach_through(modules: dict[str, ast.Module], packages: set[str]) -> list[str]:
    """Where a module reaches past an interface:

    - it imports another unit's private name, or reads a private attribute (not of ``self``
      or ``cls``) that its own unit does not define but another unit does;
    - outside gitml.runlog, it reads ``.tracker`` of anything but ``self``: code holding a
      Client (or an artifacts service, a registry) asks it, not the Tracker behind it;
    - it reads ``.store`` through a tracker (``x.tracker.store``): the Tracker's store is its own;
    - it reads ``.store`` of anything but ``self`` outside the units that own a store
      (``STORE_OWNERS``): code above asks the facade, not the git store behind it.
    """
    defined: dict[str, set[str]] = {}
    for module, tree in modules.items():
        defined.setdefault(_unit(module, packages), set()).update(_private_names(tree))
    elsewhere: dict[str, set[str]] = {u: set().union(*(d for v, d in defined.items() if v != u)) for u in defined}
    problems = []
    for module, tree in sorted(modules.items()):
        unit = _unit(module, packages)
        own = defined[unit]
        for node in ast.walk(tree):
            where = f"{module}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gitml"):
                if _unit(node.module, packages) != unit:
                    problems += [f"{where} imports {node.module}.{a.name}" for a in node.names if _is_private(a.name)]
            if not isinstance(node, ast.Attribute):
                continue
            base = node.value
            on_self = isinstance(base, ast.Name) and base.id in ("self", "cls")
            if _is_private(node.attr) and not on_self and node.attr not in own and node.attr in elsewhere[unit]:
                problems.append(f"{where} reads {ast.unparse(node)}")
            if node.attr == "tracker" and not on_self and unit != "gitml.runlog" and module not in TRACKER_ALLOWED:
                problems.append(f"{where} reaches through {ast.unparse(node)}")
            if node.attr == "store" and isinstance(base, ast.Attribute) and base.attr == "tracker":
                problems.append(f"{where} reaches through {ast.unparse(node)}")
            elif (
                node.attr == "store"
                and not on_self
                and unit not in STORE_OWNERS
                and isinstance(node.ctx, ast.Load)
                and module not in STORE_READS_ALLOWED
            ):
                problems.append(f"{where} reads {ast.unparse(node)}")
    return problems


def _packages() -> set[str]:
    return {
        f"gitml.{n}"
        for n in os.listdir(os.path.join(ROOT, "gitml"))
        if os.path.isfile(os.path.join(ROOT, "gitml", n, "__init__.py"))
    }


def test_no_reach_through_into_other_layers():
    assert reach_through(_modules(), _packages()) == []


def test_the_reach_through_check_finds_what_it_forbids():
    """What the CLI, sync and fluent did before they had Client's interface."""
    bad = {
        "gitml.cli.main": "def log_(c, run):\n    return lineage(c.tracker.store, c.tracker.resolve(run))\n\n\n"
        "def push(c):\n    return c.store\n",
        "gitml.fluent": "from gitml.store.git import _user\n\n"
        "def search(c):\n    return c._experiment_ids(None, None), _client._finalizer.detach()\n",
        "gitml.client": "class Client:\n    def __init__(self):\n        self._finalizer = None\n\n"
        "    def _experiment_ids(self, a, b):\n        return self._finalizer\n",
        "gitml.store.git": "def _user():\n    return 'me'\n",
    }
    problems = reach_through({m: ast.parse(s) for m, s in bad.items()}, {"gitml.cli", "gitml.store"})
    assert problems == [
        "gitml.cli.main:6 reads c.store",
        "gitml.cli.main:2 reaches through c.tracker.store",
        "gitml.cli.main:2 reaches through c.tracker",
        "gitml.cli.main:2 reaches through c.tracker",
        "gitml.fluent:1 imports gitml.store.git._user",
        "gitml.fluent:4 reads c._experiment_ids",
        "gitml.fluent:4 reads _client._finalizer",
    ]


# -- import cycles ----------------------------------------------------------------------
def module_imports(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    """What each module imports when it is imported (module level, not under TYPE_CHECKING);
    importing ``a.b.c`` imports the packages ``a.b`` too."""
    graph: dict[str, set[str]] = {}
    for module, tree in modules.items():
        found = set()
        body = list(tree.body)
        while body:
            node = body.pop(0)
            if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                body += node.body + node.orelse
            elif isinstance(node, ast.Try):
                body += node.body + node.orelse + node.finalbody
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        targets = set()
        for target in found:
            parts = target.split(".")
            targets |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        graph[module] = {t for t in targets if t in modules and t != module and not module.startswith(t + ".")}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

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
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_module_imports_in_a_circle():
    assert import_cycles(module_imports(_modules())) == []


def test_the_cycle_check_finds_the_old_cli_circle():
    """cli/main.py imported the command modules, which imported cli/main back."""
    old = {
        "gitml.cli": "",
        "gitml.cli.main": "import click\n\ncli = None\nfrom gitml.cli import storage  # noqa\n",
        "gitml.cli.storage": "from gitml.cli.main import _client, cli\n",
        "gitml.cli.common": "",
    }
    assert import_cycles(module_imports({m: ast.parse(s) for m, s in old.items()})) == [
        ["gitml.cli.main", "gitml.cli.storage"]
    ]


def test_each_cli_module_imports_first_in_a_fresh_interpreter(tmp_path):
    """Whichever CLI module is imported first, every command is registered on the root group."""
    names = sorted(
        n[:-3] for n in os.listdir(os.path.join(ROOT, "gitml", "cli")) if n.endswith(".py") and n != "__init__.py"
    )
    counts = set()
    for first in names:
        order = [first] + [n for n in names if n != first][::-1]
        script = (
            "import importlib\n"
            f"for name in {order!r}:\n"
            "    importlib.import_module('gitml.cli.' + name)\n"
            "from gitml.cli.main import cli\n"
            "print(len(cli.commands))\n"
        )
        counts.add(run_python(script, cwd=tmp_path).stdout.strip())
    assert len(counts) == 1 and int(counts.pop()) >= 24
    # and as the hook runs it, with no re-import trick
    out = run_python(
        "import runpy, sys\nsys.argv = ['gitml', '--help']\nrunpy.run_module('gitml', run_name='__main__')",
        cwd=tmp_path,
    )
    assert "checkout" in out.stdout and "registry" in out.stdout


# -- errors -----------------------------------------------------------------------------
def test_every_error_class_is_reachable_from_gitml_errors():
    """Every exception class gitml defines (but a module's private control flow, `_Name`)
    lives in gitml/errors.py, is a GitmlError, reachable as gitml.errors.<Name> and
    gitml.exceptions.<Name>, and listed in __all__."""
    import importlib

    import gitml.errors
    import gitml.exceptions

    found = []
    for module, tree in _modules().items():
        # these import MLflow / MLServer (not installed here, each in its own venv): they define none
        if module.startswith("gitml.mlflow_plugin") or module == "gitml.serving.mlserver":
            assert not [
                n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name.endswith(("Error", "Exception"))
            ]
            continue
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
        if not classes:
            continue
        loaded = importlib.import_module(module)
        found += [(module, c, getattr(loaded, c)) for c in classes if issubclass(getattr(loaded, c), BaseException)]
    assert len(found) > 30
    for module, name, cls in found:
        assert issubclass(cls, gitml.errors.GitmlError), f"{module}.{name} is no GitmlError"
        assert module == "gitml.errors", f"{module}.{name} is an error class outside gitml/errors.py"
        assert getattr(gitml.errors, name) is cls, f"gitml.errors.{name} is not {module}.{name}"
        assert getattr(gitml.exceptions, name) is cls
        assert name in gitml.errors.__all__ and name in gitml.exceptions.__all__
    assert set(gitml.errors.__all__) == {name for _, name, _ in found} | {"MlflowException"}


# -- gitml.Client is MLflow's MlflowClient ----------------------------------------------
# MlflowClient's methods gitml has (tracking and registry), and the three of its own a
# Client needs (a repository is opened, buffered, closed). The plumbing the CLI, UI, sync,
# projects and the MLflow plugin use is gitml.ops.Operations'.
CLIENT_SURFACE = {
    "create_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "rename_experiment",
    "delete_experiment",
    "restore_experiment",
    "set_experiment_tag",
    "delete_experiment_tag",
    "search_experiments",
    "create_run",
    "get_run",
    "get_parent_run",
    "log_param",
    "log_metric",
    "set_tag",
    "delete_tag",
    "log_batch",
    "log_inputs",
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_table",
    "log_image",
    "log_figure",
    "list_artifacts",
    "download_artifacts",
    "load_table",
    "get_metric_history",
    "set_terminated",
    "update_run",
    "delete_run",
    "restore_run",
    "search_runs",
    "create_registered_model",
    "get_registered_model",
    "search_registered_models",
    "delete_registered_model",
    "create_model_version",
    "get_model_version",
    "delete_model_version",
    "search_model_versions",
    "get_latest_versions",
    "transition_model_version_stage",
    "set_registered_model_alias",
    "delete_registered_model_alias",
    "get_model_version_by_alias",
    "update_registered_model",
    "rename_registered_model",
    "set_registered_model_tag",
    "delete_registered_model_tag",
    "copy_model_version",
    "get_model_version_download_uri",
    "update_model_version",
    "set_model_version_tag",
    "delete_model_version_tag",
    "repo_path",
    "flush",
    "close",  # gitml's own
}


def test_client_is_mlflows_surface_each_method_documented():
    """``gitml.Client``'s public names are MlflowClient's (and open/flush/close); each says
    its Args, Returns and Raises and shows a one-line example."""
    import inspect

    names = {n for n in dir(gitml.Client) if not n.startswith("_")}
    assert names == CLIENT_SURFACE, (sorted(names - CLIENT_SURFACE), sorted(CLIENT_SURFACE - names))
    for name in sorted(names):
        member = inspect.getattr_static(gitml.Client, name)
        function = member.fget if isinstance(member, property) else member
        doc = inspect.getdoc(function) or ""
        params = [p for p in inspect.signature(function).parameters if p != "self"]
        assert ">>> " in doc and "client." in doc.split(">>> ")[-1], f"Client.{name} shows no example"
        assert "Returns:" in doc, f"Client.{name} says nothing of what it returns"
        missing = [p for p in params if f"    {p}:" not in doc]
        assert not missing, f"Client.{name}'s Args miss {missing}"
    from gitml.ops import Operations

    assert issubclass(Operations, gitml.Client)  # the facade keeps every MLflow call


FACES = {"gitml", "gitml.registry", "gitml.models", "gitml.projects", "gitml.pyfunc", "gitml.ui"}


def test_errors_are_imported_from_gitml_errors():
    """No module imports an error class from the module that raises it: from gitml.errors
    (gitml.exceptions), or from a package face that lists it for users."""
    import gitml.errors

    names = set(gitml.errors.__all__)
    found = []
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("gitml")
                and node.module not in FACES | {"gitml.errors", "gitml.exceptions"}
            ):
                found += [
                    f"{module}:{node.lineno} imports {a.name} from {node.module}" for a in node.names if a.name in names
                ]
            if isinstance(node, ast.ImportFrom) and node.module in FACES and module.startswith(node.module + "."):
                found += [
                    f"{module}:{node.lineno} imports {a.name} from its face" for a in node.names if a.name in names
                ]
    assert found == []


def test_shared_cli_options_are_defined_once():
    """--json, -e/--experiment, -f/--filter and -o/--order-by are gitml.cli.common's
    decorators; no command module spells them out again (``gitml run --experiment``, one
    name as MLflow's ``mlflow run`` takes, is another option)."""
    shared = [{"--json"}, {"-e", "--experiment"}, {"-f", "--filter"}, {"-o", "--order-by"}]
    found = []
    for module, tree in _modules().items():
        if not module.startswith("gitml.cli.") or module == "gitml.cli.common":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "option":
                names = {a.value for a in node.args if isinstance(a, ast.Constant)}
                found += [f"{module}:{node.lineno} {sorted(s)}" for s in shared if s <= names]
    assert found == []


def test_tests_mirror_the_package():
    """A test file lives in the folder of what it tests: ``tests/<entry>/`` for an entry of
    ``gitml/`` (``tests/store/`` for ``gitml.store``, ``tests/sync/`` for ``gitml.sync``),
    ``tests/compat/`` for the tests judged by the real MLflow or GTO; at the top only the
    package-wide checks (this file, the type check). With no ``__init__.py`` pytest imports
    each test file by its bare name, so no two may share one."""
    tests = os.path.join(ROOT, "tests")
    top = sorted(n for n in os.listdir(tests) if n.startswith("test_") and n.endswith(".py"))
    assert top == ["test_layout.py", "test_types.py"], "put new test files in tests/<area>/"
    entries = {n.removesuffix(".py") for n in os.listdir(os.path.join(ROOT, "gitml"))}
    folders = [n for n in os.listdir(tests) if os.path.isdir(os.path.join(tests, n)) and not n.startswith((".", "_"))]
    assert sorted(set(folders) - entries - {"compat", "data"}) == []
    seen: dict[str, str] = {}
    clashes = []
    for folder, _, files in os.walk(tests):
        for n in files:
            if n.startswith("test_") and n.endswith(".py"):
                if n in seen:
                    clashes.append(f"{os.path.relpath(folder, tests)}/{n} and {seen[n]}/{n}")
                seen[n] = os.path.relpath(folder, tests)
    assert clashes == []
    assert not any(os.path.exists(os.path.join(tests, f, "__init__.py")) for f in folders)


def test_the_slow_list_names_tests_that_exist():
    """conftest's SLOW_FILES and SLOW_TESTS keep tests out of the fast lane by name: a name
    that no longer exists (a test renamed or moved) would silently put a slow test back."""
    from tests.conftest import HEAVIEST_FIRST, SLOW_FILES, SLOW_TESTS

    defined: dict[str, set[str]] = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "tests")):
        for n in files:
            if n.startswith("test_") and n.endswith(".py"):
                tree = ast.parse(open(os.path.join(folder, n)).read())
                defined[n] = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    assert sorted(SLOW_FILES - set(defined)) == []
    assert sorted(set(HEAVIEST_FIRST) - set(defined)) == []  # the files xdist hands out first
    assert sorted(f"{f}::{t}" for f, names in SLOW_TESTS.items() for t in names if t not in defined.get(f, ())) == []
