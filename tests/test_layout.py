"""The package's shape: one public namespace, imports going one way, a fast CLI."""

import ast
import os

import gitml
from tests.conftest import ROOT, run_python

# Lower layers never import higher ones.
LAYERS = [
    ("gitml.errors", "gitml.names", "gitml.exceptions", "gitml.yamlread"),
    ("gitml.store",),
    ("gitml.tracking", "gitml.artifacts.cas", "gitml.artifacts.config", "gitml.artifacts.formats", "gitml.artifacts.statcache",
     "gitml.data", "gitml.system_metrics"),
    ("gitml.artifacts.service",),
    ("gitml.registry",),
    ("gitml.client", "gitml.runviews", "gitml.frame", "gitml.sync", "gitml.entities", "gitml.report"),
    ("gitml.fluent", "gitml.artifacts", "gitml.projects"),
    ("gitml.models", "gitml.pyfunc", "gitml.sklearn", "gitml.pytorch", "gitml.registry.gitops"),
    ("gitml.cli", "gitml.ui", "gitml.serving", "gitml.mlflow_plugin"),
]


def _layer(module: str) -> int | None:
    """The layer of the longest prefix naming ``module`` (``gitml.registry.gitops`` sits above
    ``gitml.registry``)."""
    found = [(len(p), level) for level, prefixes in enumerate(LAYERS) for p in prefixes
             if module == p or module.startswith(p + ".")]
    return max(found)[1] if found else None


def test_public_namespace_is_complete():
    exported = set(gitml.__all__)
    for name in exported - {"__version__"}:
        assert getattr(gitml, name) is not None
    public_fluent = {
        n for n in dir(__import__("gitml.fluent", fromlist=["x"])) if not n.startswith("_") and callable(getattr(gitml.fluent, n))
    }
    missing = {n for n in public_fluent if n not in exported and n not in {"client", "run_of", "check_key", "annotations"}}
    missing -= {"Client", "Experiment", "Metric", "Run", "RunStatus", "ViewType", "GitmlError", "InvalidInputError", "RunWriter", "atexit"}
    assert not missing, f"fluent functions missing from gitml.__all__: {missing}"


def test_imports_go_one_way():
    package = os.path.join(ROOT, "gitml")
    problems = []
    for folder, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            level = _layer(module)
            if level is None:
                continue
            for node in ast.walk(ast.parse(open(path).read())):
                targets = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    targets = [node.module]
                elif isinstance(node, ast.Import):  # `import a.b.c as x` imports a.b.c
                    targets = [a.name for a in node.names]
                for target in targets:
                    other = _layer(target)
                    if other is not None and other > level:
                        problems.append(f"{module} imports {target}")
    assert not problems, problems


def test_cli_help_does_not_import_pandas_or_dulwich(tmp_path):
    out = run_python(
        "import sys\nfrom gitml.cli.main import cli\n"
        "try:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('pandas' in sys.modules, 'dulwich' in sys.modules,\n"
        "      any(m in sys.modules for m in ('torch', 'sklearn', 'cloudpickle', 'gitml.models', 'gitml.pyfunc')))",
        cwd=tmp_path,
    )
    assert out.stdout.strip().endswith("False False False")
