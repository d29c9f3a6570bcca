"""The package's shape: imports run one way, and the library never needs the repository root.

Read from the source (AST), so nothing is imported: a module-level import graph over
`diffcamera_jax` and `data_pipeline`, late (function-level) imports included. The tests import
neither each other nor `tools/`: what they share is in `diffcamera_jax.testing`.
"""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("diffcamera_jax", "data_pipeline")
# Command-line entry points that nothing imports: they may use the library.
ENTRY_POINTS = {"data_pipeline.image_depth_folder.__main__", "data_pipeline.preview"}


def _modules() -> dict[str, str]:
  out = {}
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
          out[module.removesuffix(".__init__")] = path
  return out


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
  """Modules of the two packages (or `configs`) that `module` imports, late imports included."""
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      names = [f"{base}.{a.name}" for a in node.names] + [base]
    for name in names:
      if name == "configs" or name.startswith("configs."):
        found.add(name)
        continue
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name and name != module:
        found.add(name)
        if isinstance(node, ast.ImportFrom):
          break
  return found


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_module_imports_one_that_imports_it_back():
  graph = _graph()
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []

  def visit(v):  # Tarjan's strongly connected components
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in graph:
        continue
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        cycles.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  assert not cycles, f"import cycles: {cycles}"


def test_host_pipeline_never_imports_the_library():
  graph = _graph()
  wrong = {m: sorted(d for d in deps if d.startswith("diffcamera_jax"))
           for m, deps in graph.items()
           if m.startswith("data_pipeline") and m not in ENTRY_POINTS}
  assert not {m: d for m, d in wrong.items() if d}, wrong


def test_nothing_imports_the_repository_configs_folder():
  graph = _graph()
  wrong = {m: sorted(d for d in deps if d == "configs" or d.startswith("configs."))
           for m, deps in graph.items()}
  assert not {m: d for m, d in wrong.items() if d}


def test_the_graph_sees_imports():
  """Guards the checks above against a parser that finds nothing."""
  graph = _graph()
  assert "diffcamera_jax.objective.objective" in graph["diffcamera_jax.training.step"]
  assert "data_pipeline.pipeline" in graph["diffcamera_jax.training.trainer"]
  assert "diffcamera_jax.depth" in graph["data_pipeline.image_depth_folder.__main__"]


# The house, bottom to top: a package may import its own floor and those below, never above.
# Each floor lists module prefixes; the commands (top-level programs) form the roof, and above it
# the helpers the test suite shares (`testing`), which nothing in the library imports.
FLOORS = (
    ("data_pipeline",),
    ("diffcamera_jax.cli", "diffcamera_jax.user_files", "diffcamera_jax.imageio",
     "diffcamera_jax.sharding"),
    ("diffcamera_jax.configs",),
    ("diffcamera_jax.optics", "diffcamera_jax.weights", "diffcamera_jax.exported"),
    ("diffcamera_jax.models",),
    ("diffcamera_jax.objective", "diffcamera_jax.depth"),
    ("diffcamera_jax.inference",),
    ("diffcamera_jax.evaluation",),
    ("diffcamera_jax.training",),
    ("diffcamera_jax.train", "diffcamera_jax.export", "diffcamera_jax.refocus",
     "diffcamera_jax.evaluate", "diffcamera_jax.memory_plan", "diffcamera_jax.optics_demo", "diffcamera_jax"),
    ("diffcamera_jax.testing",),
)


def _floor(module: str) -> int:
  best = None
  for level, prefixes in enumerate(FLOORS):
    for prefix in prefixes:
      if module == prefix or module.startswith(prefix + "."):
        if best is None or len(prefix) > best[1]:
          best = (level, len(prefix))
  assert best is not None, f"{module} is on no floor of FLOORS"
  return best[0]


def test_imports_only_run_down_the_house():
  """No package imports one above it (so no two packages import each other)."""
  graph = _graph()
  upward = sorted(f"{m} -> {d}" for m, deps in graph.items() if m not in ENTRY_POINTS
                  for d in deps if not d.startswith("configs") and _floor(d) > _floor(m))
  assert not upward, upward


def test_every_floor_is_inhabited():
  modules = set(_graph())
  for prefixes in FLOORS:
    for prefix in prefixes:
      assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


def test_nothing_in_the_library_imports_the_test_helpers():
  graph = _graph()
  wrong = {m: sorted(d for d in deps if d.startswith("diffcamera_jax.testing"))
           for m, deps in graph.items() if not m.startswith("diffcamera_jax.testing")}
  assert not {m: d for m, d in wrong.items() if d}, wrong


# An import statement inside a string: the scripts tests hand to a Python subprocess.
_SCRIPT_IMPORT = re.compile(
    r"^\s*(?:from\s+([\w.]+)\s+import\s|import\s+([\w.]+)(?=\s*(?:,|$|\sas\s)))", re.MULTILINE)


def test_tests_import_neither_each_other_nor_tools():
  """No test file (nor a conftest, nor a script a test runs) imports `tests`, `tools` or a module
  of the tests folder; fixtures are injected by pytest, shared helpers come from the library."""
  files = [os.path.join(folder, name)
           for folder, _, names in os.walk(os.path.join(ROOT, "tests"))
           for name in names if name.endswith(".py")]
  local = {"tests", "tools"} | {os.path.basename(f)[:-3] for f in files}
  wrong = []
  for path in files:
    names = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
      if isinstance(node, ast.Import):
        names += [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level:
        names.append("." * node.level + (node.module or ""))
      elif isinstance(node, ast.ImportFrom):
        names.append(node.module)
      elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        names += ["".join(m) for m in _SCRIPT_IMPORT.findall(node.value)]
    wrong += [f"{os.path.relpath(path, ROOT)}: {n}" for n in names
              if n.startswith(".") or n.split(".")[0] in local]
  assert len(files) > 50 and not wrong, wrong
