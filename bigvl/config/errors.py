"""ConfigError and the one-line messages made from the exceptions config code meets."""
from __future__ import annotations

import re


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and the problem."""


def first_line(e: Exception) -> str:
    """An exception's message as one line, without the quotes KeyError adds."""
    return str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'").splitlines()[0]


def type_error_line(e: TypeError) -> str:
    """ml_collections' "Could not override field 'k' (reference). v is of original type <class
    'str'> and cannot be casted to type <class 'int'>" → "config key 'k' expects int, got str 'v'"."""
    m = re.search(r"field '([^']+)'.*?\. (.*) is of original type <class '(\w+)'> and cannot be "
                  r"casted to type <class '(\w+)'>", str(e), re.S)
    if not m:
        return first_line(e)
    key, value, got, want = m.groups()
    return f"config key {key!r} expects {want}, got {got} {value!r}"
