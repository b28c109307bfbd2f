"""The one grammar after a config's colon: `NAME:flag,flag,key=value`.

    demo:alt,sigmoid               two flags
    recipe_demo:partial,steps=300  a flag and a value, typed by its default (int here)
    own_data:b16

Every config's `get_config(arg)` parses its arg with `parse_config_args`, naming the flags
it knows and its values with their defaults. An unknown flag or key is a ConfigError that
names the known ones: a typo must not silently train the base config. Values are scalars
(bool, int, float, str); a comma always separates items.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping, Sequence

from bigvl.config.errors import ConfigError
from bigvl.config.overrides import parse_like


@dataclasses.dataclass(frozen=True)
class ConfigArgs:
    """A config's parsed arg: the flags given, and every value (given or default).

    `"alt" in args` tests a flag; `args["steps"]` reads a value.
    """
    flags: frozenset[str]
    values: Mapping[str, Any]

    def __contains__(self, flag: str) -> bool:
        return flag in self.flags

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def one_of(self, names: Sequence[str], default: str) -> str:
        """The one flag of `names` that was given, else `default`; ConfigError for two of them."""
        given = [name for name in names if name in self.flags]
        if len(given) > 1:
            raise ConfigError(f"config flags {' and '.join(map(repr, given))} exclude each other: give one")
        return given[0] if given else default


def parse_config_args(arg: str, flags: Sequence[str] = (), values: Mapping[str, Any] | None = None) -> ConfigArgs:
    """`"a,b,key=3"` → ConfigArgs(flags={a, b}, values={key: 3, ...defaults}).

    `flags`: the flags this config knows; `values`: {key: default}, each given value parsed as
    its default's type. ConfigError for an unknown flag or key (with the nearest and the known
    ones), a value that does not parse, a flag given a value or a key given none, and a repeat.
    """
    values = dict(values or {})
    given_flags, given_values = set(), {}
    for item in filter(None, (part.strip() for part in arg.split(","))):
        key, sep, text = item.partition("=")
        if key in given_flags or key in given_values:
            raise ConfigError(f"config argument {key!r} is given twice")
        if sep and key in values:
            given_values[key] = parse_like(values[key], text, key, what="config argument")
        elif not sep and key in flags:
            given_flags.add(key)
        elif sep and key in flags:
            raise ConfigError(f"config flag {key!r} takes no value: write {key!r} alone")
        elif not sep and key in values:
            raise ConfigError(f"config argument {key!r} needs a value: {key}={values[key]!r}")
        else:
            raise ConfigError(f"unknown config {'key' if sep else 'flag'} {key!r}"
                              f"{_nearest(key, list(flags) + list(values))}; {known_args(flags, values)}")
    return ConfigArgs(frozenset(given_flags), {**values, **given_values})


def known_args(flags: Sequence[str], values: Mapping[str, Any]) -> str:
    """'this config knows flags a, b and keys steps=0' (or '... knows no arguments')."""
    parts = []
    if flags:
        parts.append(f"flags {', '.join(flags)}")
    if values:
        parts.append(f"keys {', '.join(f'{k}={v!r}' for k, v in values.items())}")
    return f"this config knows {' and '.join(parts) or 'no arguments'}"


def _nearest(key: str, known: list[str]) -> str:
    near = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""
