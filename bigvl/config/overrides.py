"""Command-line overrides `--config.key=value`, each value typed by the value it replaces."""
from __future__ import annotations

import ast
import difflib
from typing import Any, Sequence

import ml_collections

from bigvl.config.errors import ConfigError


def split_overrides(args: Sequence[str]) -> list[str]:
    """Command-line words `--config.key=value` → ['key=value', ...]; ConfigError for any other word."""
    overrides = []
    for item in args:
        if not item.startswith("--config."):
            raise ConfigError(f"unrecognised argument {item!r} (config overrides are --config.key=value)")
        key_value = item[len("--config."):]
        if "=" not in key_value:
            raise ConfigError(f"override {item!r} needs a value: --config.{key_value}=VALUE")
        overrides.append(key_value)
    return overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies `key.sub=value` strings in place, typed by the existing value.

    Raises ConfigError naming the key for an unknown key (with the nearest valid one) or a
    value that does not parse as the key's type.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        *parents, leaf = key.split(".")
        node = config
        for depth, name in enumerate(parents + [leaf]):
            if not isinstance(node, ml_collections.ConfigDict) or name not in node:
                prefix = ".".join(parents[:depth])
                keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                near = difflib.get_close_matches(name, keys, n=1)
                hint = f"; did you mean {'.'.join(filter(None, [prefix, near[0]]))!r}?" if near else ""
                raise ConfigError(f"unknown config key {key!r}{hint}")
            if depth < len(parents):
                node = node[name]
        old = node[leaf]
        with node.unlocked():
            node[leaf] = parse_like(old, text, key)


def parse_like(old: Any, text: str, key: str, what: str = "config key") -> Any:
    """`text` parsed as the type of `old` (bool, int, float, str, list, or a Python literal).

    None / none gives None where `old` is not a str. ConfigError "{what} 'key' expects int, got 'x'".
    """
    if text in ("None", "none") and not isinstance(old, str):
        return None
    try:
        if isinstance(old, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if isinstance(old, int):
            return int(text)
        if isinstance(old, float):
            return float(text)
        if isinstance(old, str):
            return text
        value = ast.literal_eval(text)
        if isinstance(old, (list, tuple)) and not isinstance(value, (list, tuple)):
            raise ValueError
        return list(value) if isinstance(old, list) else value
    except (ValueError, SyntaxError):
        raise ConfigError(f"{what} {key!r} expects {type(old).__name__}, got {text!r}") from None
