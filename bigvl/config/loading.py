"""Loading a config: a shipped name (`demo[:ARG]`), a file (`path/to/x.py[:ARG]`), or a run's config.json.

The configs in the repo's `configs/` are installed as the package `bigvl.configs`, so a bare
name resolves from a wheel as from a clone; a spec that ends in `.py` or holds a `/` is a path.
What follows the colon goes to the config's `get_config(ARG)` (grammar: bigvl/config/args.py).
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import re
import types
from pathlib import Path

import ml_collections
from flax.traverse_util import flatten_dict

from bigvl.config.errors import ConfigError, first_line, type_error_line
from bigvl.config.schema import base_config, complete_evals
from bigvl.inference.run import read_config_json

CONFIGS_PACKAGE = "bigvl.configs"
_NAME = re.compile(r"[A-Za-z_]\w*")


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`NAME[:ARG]` (a shipped config) or `path/to/config.py[:ARG]` → its `get_config(ARG)`, locked.

    ConfigError for a missing file, an unknown name (naming the shipped ones, nearest first), a
    file without get_config, and any error the config raises (its message prefixed by the config).
    """
    target, _, arg = spec.partition(":")
    if is_config_path(target):
        if not os.path.isfile(target):
            hint = ""
            if Path(target).stem in config_names() and not os.path.dirname(target):
                hint = f" (a shipped config is named without .py: {Path(target).stem!r})"
            raise ConfigError(f"config file {target!r} not found{hint}")
        where = f"config file {target!r}"
        module_spec = importlib.util.spec_from_file_location(Path(target).stem, target)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module, where = shipped_config(target), f"config {target!r}"
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{where} defines no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except AttributeError as e:  # a locked base config rejects unknown keys
        raise ConfigError(f"{where}: {first_line(e)}") from None
    except TypeError as e:  # ml_collections' type-safe assignment: `c.batch_size = "64"`
        raise ConfigError(f"{where}: {type_error_line(e)}") from None
    complete_evals(config)  # entries a config writes with some options get the rest's defaults
    config.lock()
    return config


def is_config_path(target: str) -> bool:
    """A file path (`configs/demo.py`, `./x.py`), not a shipped name (`demo`)."""
    return target.endswith(".py") or "/" in target or os.sep in target


def shipped_config(name: str) -> types.ModuleType:
    """The module `bigvl.configs.NAME`; ConfigError naming the shipped configs, nearest first."""
    names = config_names()
    if not _NAME.fullmatch(name) or name not in names:
        near = difflib.get_close_matches(name, names, n=len(names), cutoff=0.0)
        rest = [n for n in names if n not in near]
        raise ConfigError(f"unknown config {name!r}; the shipped configs are (nearest first) "
                          f"{', '.join(near + rest)}; or give a file: path/to/config.py")
    return importlib.import_module(f"{CONFIGS_PACKAGE}.{name}")


def configs_dir() -> Path:
    """The directory of the shipped configs: the installed package `bigvl.configs` (in a clone, `configs/`)."""
    try:
        spec = importlib.util.find_spec(CONFIGS_PACKAGE)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"no shipped configs: package {CONFIGS_PACKAGE!r} is not installed "
                          f"(pip install -e . in a clone); give a file: path/to/config.py")
    return Path(list(spec.submodule_search_locations)[0])


def config_names() -> list[str]:
    """The shipped configs' names, sorted."""
    return sorted(p.stem for p in configs_dir().glob("*.py") if _NAME.fullmatch(p.stem) and p.stem != "__init__")


def list_configs() -> list[tuple[str, str]]:
    """[(name, the first line of its docstring)] for every shipped config, sorted by name."""
    found, directory = [], configs_dir()
    for name in config_names():
        doc = ast.get_docstring(ast.parse((directory / f"{name}.py").read_text()))
        found.append((name, (doc or "").strip().split("\n")[0]))
    return found


def load_config_json(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir/config.json`, over the current schema's defaults (`base_config`).

    Old flat `evals` keys are converted to entries on read (`bigvl.inference.run.convert_flat_evals`);
    entries the schema does not hold (another NAME) are added as saved. Raises FileNotFoundError when
    there is no config.json; a key the schema does not have is a KeyError.
    """
    config = base_config()
    saved = read_config_json(workdir)
    evals = saved.pop("evals", {})
    for name, entry in evals.items():
        if isinstance(entry, dict) and (name not in config.evals or config.evals[name].type != entry.get("type")):
            config.evals[name] = ml_collections.ConfigDict(entry)
    config.update_from_flattened_dict(flatten_dict({**saved, "evals": evals}, sep="."))
    complete_evals(config)
    return config

