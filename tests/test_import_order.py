"""The layout rule, read from the source: imports run one way between the stages, and no module
of the library grows past a few screens.

    parallel → models, data → losses → inference → evaluators → train → CLI

A module may import its own stage or an earlier one (every import counts, also one inside a
function); models and data never import each other; only the CLI imports the synthetic world
(bigvl.data.world); nothing in the library imports what sits beside it in the clone (benchmarks,
experiments, tests, configs).
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "bigvl"
ORDER = {"parallel": 0, "models": 1, "data": 1, "losses": 2, "inference": 3, "evaluators": 4, "train": 5,
         "cli": 6}
CLI_MODULES = {"__init__", "__main__", "main", "cli", "evaluate", "api", "config", "recipes", "fine_tuning", "report", "plots",
               "convert", "plan"}
WORLD = "bigvl.data.world"
BESIDE = ("benchmarks", "experiments", "tests", "configs")  # in the clone, not in the installed package
MAX_LINES = 400


def stage_of(module: str) -> str:
    """'bigvl.models.vit' → 'models'; top-level modules of bigvl are the CLI stage."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CLI_MODULES or parts[1].startswith("__"):  # bigvl.__version__: the package
        return "cli"
    if parts[1] not in ORDER:
        raise AssertionError(f"{module}: no stage for bigvl.{parts[1]} (add it to ORDER)")
    return parts[1]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, packages: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, imported module) for every import of one of `packages` in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] in packages]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in packages:
            if node.module in packages:  # from bigvl import api → bigvl.api
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def bigvl_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of bigvl in a file, at any depth."""
    return imports_of(path, ("bigvl",))


FILES = sorted(PACKAGE.rglob("*.py"))


def edges():
    for path in FILES:
        source = module_name(path)
        for line, target in bigvl_imports(path):
            yield path, line, source, target


def test_the_rule_sees_every_module():
    assert len(FILES) > 60
    for path in FILES:
        stage_of(module_name(path))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_run_one_way(path):
    source = module_name(path)
    bad = []
    for line, target in bigvl_imports(path):
        s, t = stage_of(source), stage_of(target)
        in_world = source.startswith(WORLD)
        if ORDER[t] > ORDER[s]:
            bad.append(f"line {line}: {source} ({s}) imports {target} ({t}), a later stage")
        elif {s, t} == {"models", "data"}:
            bad.append(f"line {line}: {source} imports {target}: models and data never import each other")
        elif target.startswith(WORLD) and not in_world and s != "cli":
            bad.append(f"line {line}: {source} imports the synthetic world; only the CLI may")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_the_library_imports_nothing_beside_it(path):
    """An installed bigvl has no benchmarks/, experiments/, tests/ or configs/ to import."""
    bad = [f"line {line}: imports {target}" for line, target in imports_of(path, BESIDE)]
    assert not bad, f"{module_name(path)}: " + "; ".join(bad)


def test_the_rule_catches_a_wrong_edge(tmp_path):
    """The checker itself: an edge against the order is reported."""
    assert ORDER[stage_of("bigvl.train.loop")] > ORDER[stage_of("bigvl.models.vit")]
    assert stage_of("bigvl.config") == "cli"
    fake = tmp_path / "bigvl" / "models" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from bigvl.train.loop import train_and_evaluate\n"
                    "import tests.helpers.tiny\nfrom experiments import ablation\n")
    assert bigvl_imports(fake) == [(2, "bigvl.train.loop")]
    assert imports_of(fake, BESIDE) == [(3, "tests.helpers.tiny"), (4, "experiments.ablation")]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name}: {lines} lines; split it by job (limit {MAX_LINES})"
