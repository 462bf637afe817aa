"""No code path builds a shell command string: every process is exec'd from an argument list."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("netkit", "bench", "tests")

# Calls that hand a string to /bin/sh, by dotted name as written at the call site.
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "pty.spawn",
               "asyncio.create_subprocess_shell", "platform.popen"}
SHELL_MODULES = {"commands"}  # Python 2's commands.getoutput & co.
SHELLS = {"sh", "bash", "dash", "zsh", "ash", "ksh", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _literal_argv(node: ast.AST) -> list[str] | None:
    if isinstance(node, (ast.List, ast.Tuple)):
        return [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else "?" for e in node.elts]
    return None


def _command_flag(arg: str) -> bool:
    """``-c`` alone or among combined short options (``-euc``, ``-lc``)."""
    return arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Every place in ``source`` that runs a shell on a string; "file:line: what"."""
    out = []
    tree = ast.parse(source, filename)
    imported: dict[str, str] = {}  # local name -> dotted origin, for `from os import system as s`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if node.module in SHELL_MODULES or f"{node.module}.{alias.name}" in SHELL_CALLS:
                    out.append(f"{filename}:{node.lineno}: imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            out += [f"{filename}:{node.lineno}: imports {a.name}" for a in node.names if a.name in SHELL_MODULES]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            name = imported.get(name, name)
            if name in SHELL_CALLS or name.split(".")[0] in SHELL_MODULES or name.endswith(".subprocess_shell"):
                out.append(f"{filename}:{node.lineno}: calls {name}")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value in (False, None)):
                    out.append(f"{filename}:{node.lineno}: shell={ast.unparse(kw.value)}")
        argv = _literal_argv(node)
        # A shell anywhere in the list (also behind `ip netns exec NS`, `nsenter ...`, `env`) given -c.
        shells = {os.path.basename(s) for s in SHELLS} - {"env"}
        if argv and any(os.path.basename(a) in shells and _command_flag(b) for a, b in zip(argv, argv[1:])):
            out.append(f"{filename}:{node.lineno}: runs a shell on a command string: {argv[:4]}")
    return out


def _sources() -> list[Path]:
    files = []
    for top in SCANNED:
        files += [p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def test_no_module_runs_a_shell_command_string() -> None:
    sources = _sources()
    assert len(sources) > 50 and any(p.name == "handler.py" for p in sources)  # really scanned the tree
    found = []
    for path in sources:
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


@pytest.mark.parametrize("snippet", [
    "import subprocess\nsubprocess.run('ip link', shell=True)",
    "import subprocess\nsubprocess.Popen(cmd, shell=flag)",
    "import os\nos.system('ip link')",
    "import os\nos.popen('ip link').read()",
    "from os import system as run\nrun('x')",
    "import subprocess\nsubprocess.getoutput('x')",
    "from subprocess import getstatusoutput\ngetstatusoutput('x')",
    "import pty\npty.spawn('sh')",
    "import commands\ncommands.getoutput('x')",
    "import asyncio\nasyncio.create_subprocess_shell('x')",
    "import subprocess\nsubprocess.run(['sh', '-c', 'ip link'])",
    "import subprocess\nsubprocess.run(('/bin/bash', '-euc', cmd))",
    "import subprocess\nsubprocess.check_call(['bash', '-c', cmd])",
    "import subprocess\nsubprocess.run(['ip', 'netns', 'exec', ns, 'sh', '-c', 'x'])",
    "import subprocess\nsubprocess.run(['env', 'A=1', 'sh', '-c', 'x'])",
])
def test_the_scanner_catches_every_shell_form(snippet: str) -> None:
    assert violations(snippet) != []


@pytest.mark.parametrize("snippet", [
    "import subprocess\nsubprocess.run(['ip', 'link'], shell=False)",
    "import subprocess\nsubprocess.run(['ip', 'netns', 'exec', ns, 'sh'])",
    "import os\nos.execvp(argv[0], argv)",
    "import subprocess\nsubprocess.run([sys.executable, '-c', code])",
])
def test_the_scanner_allows_argument_lists(snippet: str) -> None:
    assert violations(snippet) == []
