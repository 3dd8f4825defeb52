"""The README's commands cannot drift from the command line: every command block is parsed."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from synth_pipeline.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(path: Path) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)
    lines = []
    for block in blocks:
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            line = (pending + " " + line).strip() if pending else line
            if line.count('"') % 2:  # a quoted argument that goes on over the next line
                pending = line
                continue
            pending = ""
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


COMMANDS = [(path.name, line) for path in DOCS for line in _commands(path)]


def test_the_readme_has_commands():
    assert sum(name == "README.md" for name, _ in COMMANDS) >= 5


@pytest.mark.parametrize("where, line", COMMANDS)
def test_every_documented_command_parses(where, line):
    words = shlex.split(line.split("|")[0].split(">")[0])
    while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return
    program = Path(words[0]).name
    if program == "synth-pipeline":
        _parser().parse_args(words[1:])  # raises SystemExit on an unknown command or option
    elif program == "make":
        targets = re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
        assert all(t in targets for t in words[1:] if not t.startswith("-")), (where, line)
    elif program == "python" and words[1:2] == ["-m"]:
        assert importlib.util.find_spec(words[2]) is not None, (where, line)


def test_every_option_has_help():
    parser = _parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            assert action.help, f"{sub.prog} {action.option_strings}"
