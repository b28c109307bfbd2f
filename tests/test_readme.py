"""The README's and the guides' shell lines name only commands, flags, configs and config keys that exist.

Every line of a ```bash block is split into commands (`&&`, `;`, `|`, `$(...)`); each bigvl command's
own argparse parser parses its arguments (the parse is stopped before the command does any work),
a `--config NAME[:ARGS]` is loaded and its `--config.key=value` overrides applied to it (no
compilation), a data script, benchmark or experiment module must exist with a parser that takes
the flags, and any other program must be one a user is expected to have. So the docs cannot drift
from the code again.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import pathlib
import re
import shlex
import sys

import pytest

from bigvl.cli import COMMANDS
from bigvl.config import apply_overrides, base_config, load_config, split_overrides

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]
# Programs the docs may use besides bigvl's own commands; their flags are not ours to check.
EXTERNAL = {"pip", "git", "cd", "ls", "cat", "export", "gcloud", "gsutil", "tensorboard", "jupytext", "jupyter",
            "img2dataset", "mkdir", "cp", "wget", "curl", "tar", "unzip", "sudo", "source", "gcsfuse", "echo",
            "nvidia-smi", "head", "tail", "tee", "xargs", "watch", "open_clip", "docker", "tfds", "rm", "mv"}
MODULE_COMMANDS = {command.module: name for name, command in COMMANDS.items()}
MODULE_COMMANDS.update({"bigvl": None, "bigvl.__main__": None, "bigvl.convert": "convert"})
SCRIPT_COMMANDS = {command.script: name for name, command in COMMANDS.items() if command.script}


class _Parsed(Exception):
    """Raised by the patched parser right after a successful parse: the command does no work."""

    def __init__(self, namespace, rest):
        super().__init__()
        self.namespace, self.rest = namespace, rest


@contextlib.contextmanager
def parse_only():
    """ArgumentParser.parse_args / parse_known_args parse as usual, then stop the caller."""
    real = argparse.ArgumentParser.parse_known_args

    def known(self, args=None, namespace=None):
        namespace, rest = real(self, args, namespace)
        raise _Parsed(namespace, rest)

    def full(self, args=None, namespace=None):
        namespace, rest = real(self, args, namespace)
        if rest:
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        raise _Parsed(namespace, [])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_known_args", known)
        mp.setattr(argparse.ArgumentParser, "parse_args", full)
        yield


def parse_with_module(module: str, argv: list[str]) -> _Parsed:
    """Runs `module.main(argv)` until its parser has parsed argv; a parse error fails the test."""
    main = importlib.import_module(module).main
    saved = sys.argv
    sys.argv = [module, *argv]  # for the few mains that read sys.argv themselves
    try:
        with parse_only():
            main(argv)
    except _Parsed as parsed:
        return parsed
    except SystemExit as e:
        raise AssertionError(f"{module} refuses {' '.join(argv)!r} (exit {e.code})") from None
    finally:
        sys.argv = saved
    raise AssertionError(f"{module}.main({argv}) returned without parsing its arguments")


def check_config(parsed: _Parsed) -> None:
    """A --config NAME[:ARGS] loads and its --config.key=value overrides apply. A path outside the
    clone (`configs/my_run.py`: the user's own file) is taken as the schema's defaults."""
    spec = parsed.namespace.config
    path = spec.partition(":")[0]
    own_file = path.endswith(".py") and not (ROOT / path).is_file()
    config = base_config() if own_file else load_config(spec)
    apply_overrides(config, split_overrides([w for w in parsed.rest if w.startswith("--config.")]))


def bash_lines(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line number, logical line) of every ```bash block, backslash continuations joined."""
    lines, block, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            block = line.strip() in ("```bash", "```sh", "```shell") if not block else False
            continue
        if not block or not line.strip() or line.lstrip().startswith("#"):
            continue
        start = start or number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending, start = "", 0
    return lines


def commands_of(line: str) -> list[list[str]]:
    """The simple commands of a shell line: `$(...)` parts become their own command."""
    inner = re.findall(r"\$\(([^()]*)\)", line)
    line = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", line)
    words = shlex.split(line, comments=True)
    commands, current = [], []
    for word in words:
        if word in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    commands = [[w for w in c if w != "SUBSTITUTED"] for c in commands if c]
    return commands + [c for part in inner for c in commands_of(part)]


def check_command(words: list[str]) -> None:
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value before a command
        words = words[1:]
    if not words:
        return
    program, args = words[0], words[1:]
    if program in ("python", "python3") and args[:1] == ["-m"]:
        module, args = args[1], args[2:]
        if module == "pytest":
            return check_pytest(args)
        if module in MODULE_COMMANDS:
            name = MODULE_COMMANDS[module]
            return check_bigvl([name, *args] if name else args)
        if module.split(".")[0] in ("benchmarks", "experiments"):
            parse_with_module(module, args)
            return
        raise AssertionError(f"python -m {module}: not a bigvl command, benchmark or experiment")
    if program in ("python", "python3"):
        script = args[0]
        assert script in SCRIPT_COMMANDS, f"python {script}: no such data tool ({sorted(SCRIPT_COMMANDS)})"
        assert (ROOT / script).is_file(), f"{script} is missing from the clone"
        return check_bigvl([SCRIPT_COMMANDS[script], *args[1:]])
    if program == "bigvl":
        return check_bigvl(args)
    if program in ("bash", "sh"):
        program, args = args[0], args[1:]
    if program.endswith(".sh"):
        return check_shell_script(program, args)
    if program == "pytest":
        return check_pytest(args)
    assert program in EXTERNAL, f"{program!r}: neither a bigvl command nor a program the docs may assume"
    if program == "pip":
        check_pip(args)


def check_shell_script(script: str, args: list[str]) -> None:
    """A script of the clone; each --flag it is given appears in its text (or in the common.sh it sources)."""
    path = ROOT / script
    assert path.is_file(), f"{script} does not exist"
    text = path.read_text() + ((path.parent / "common.sh").read_text() if (path.parent / "common.sh").is_file() else "")
    for word in args:
        if word == "--":  # the rest goes to bigvl.main (launch.sh -- --config.key=value)
            break
        flag = word.split("=")[0]
        if flag.startswith("--"):
            assert re.search(rf"(^|[^\w-]){re.escape(flag)}([^\w-]|$)", text), f"{script} has no flag {flag}"


BEAM_COMMANDS = ("build_shards", "curate")  # their unknown flags go to Beam (--runner DataflowRunner ...)


def check_bigvl(args: list[str]) -> None:
    if not args or args[0].startswith("-"):
        return  # the listing, or --help / --version
    name = args[0]
    assert name in COMMANDS, f"bigvl {name}: no such command ({sorted(COMMANDS)})"
    parsed = parse_with_module(COMMANDS[name].module, args[1:])
    if getattr(parsed.namespace, "config", None):
        check_config(parsed)
    elif name in BEAM_COMMANDS:  # the flags it does not know are Beam's pipeline options, checked as it does
        from bigvl.data.ingest.beam_io import pipeline_options
        pipeline_options(parsed.rest, workers=1)
    else:
        assert not parsed.rest or all(w.startswith("--config.") for w in parsed.rest), parsed.rest


def check_pip(args: list[str]) -> None:
    """`pip install -e '.[a,b]'` names extras that pyproject.toml defines."""
    import tomllib
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for word in args:
        match = re.fullmatch(r"(?:\.|bigvl|dist/\S+\.whl)\[([\w,-]+)\]", word)
        if match:
            unknown = set(match.group(1).split(",")) - extras
            assert not unknown, f"pip install {word}: no extra {sorted(unknown)} (pyproject has {sorted(extras)})"


def check_pytest(args: list[str]) -> None:
    """pytest's flags: -n needs xdist (the test extra), -m names a declared marker."""
    import tomllib
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = {m.split(":")[0] for m in options["markers"]}
    for flag, value in zip(args, args[1:]):
        if flag == "-m":
            named = set(re.findall(r"\w+", value)) - {"not", "and", "or"}
            assert named <= markers, f"pytest -m {value!r}: undeclared marker {sorted(named - markers)}"


LINES = [pytest.param(path, line, id=f"{path.name}:{number}") for path in DOCS for number, line in bash_lines(path)]


def test_the_docs_have_shell_lines_to_check():
    assert any(param.values[0].name == "README.md" for param in LINES)


@pytest.mark.parametrize("path,line", LINES)
def test_every_documented_command_exists(path, line):
    for words in commands_of(line):
        check_command(words)


def test_the_checker_catches_drift():
    """A mistyped flag, command, config name or config key each fails (the checks can fail)."""
    with pytest.raises(AssertionError, match="refuses"):
        check_command(["python", "-m", "bigvl.main", "--config", "demo", "--wrkdir", "w"])
    with pytest.raises(AssertionError, match="no such command"):
        check_command(["bigvl", "trian", "--config", "demo"])
    with pytest.raises(Exception, match="demoo"):
        check_command(["bigvl", "train", "--config", "demoo", "--workdir", "w"])
    with pytest.raises(Exception, match="total_step"):
        check_command(["bigvl", "train", "--config", "demo", "--workdir", "w", "--config.total_step=5"])
    with pytest.raises(AssertionError, match="no extra"):
        check_command(["pip", "install", "-e", ".[tset]"])
    with pytest.raises(AssertionError, match="has no flag --zonee"):
        check_command(["tpu_scripts/create.sh", "--name", "x", "--zonee", "z"])
    with pytest.raises(AssertionError, match="no such data tool"):
        check_command(["python", "data/build_shard.py", "--out", "x"])
