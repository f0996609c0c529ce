"""Every command block of README.md and docs/*.md runs as written (issue 34, item 11).

The ```bash and ```python blocks are read from the files themselves, so a new example is
covered without touching this test. Each block runs in a fresh temporary folder laid out like
a fresh clone (copies of the packaged samples and configs, the project's ``.venv`` linked,
nothing else: no ``runs/``), its lines joined into one script that stops at the first
failure. Lines that cannot run here are dropped, each for a reason given below: those that
need ``../shared`` (the data sets beside the project; so does a ``--config`` file that reads
them), placeholders (``MODEL``, ``VAL_FOLDER``), installs, benchmarks and cluster setup.
``mesonet serve`` is started in the background on a free port (``--host`` kept to this
machine), and the block's ``curl`` lines are sent to it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)

SKIPPED = {  # a line starting with one of these: why it cannot run in a test
    "make ": "make predict and make test install and run the suite (this test among it)",
    "time make ": "make test timed: the suite, this test among it",
    "python3 -m venv": "an install",
    ".venv/bin/pip install": "an install",
    "pip install": "an install",
    "python benchmarks/": "a measurement taking minutes (benchmarks/README.md)",
    "nice -n 5 python benchmarks/": "a measurement taking minutes (benchmarks/README.md)",
    "python tools/": "model bundling, searches and re-decisions of ../shared's sets",
    "ray start": "sets up a cluster of machines",
    "ray stop": "stops a cluster of machines",
    "mesonet scan /mnt/media": "the driver of a cluster (ray start above)",
    "mesonet scan files.csv": "a manifest of the reader's own files",
}
PLACEHOLDER = re.compile(r"(^|[/=])[A-Z][A-Z0-9_]{2,}(\.\w+)?$")  # MODEL, mine/MODEL.json


@dataclass
class Block:
    source: str  # file:line
    kind: str  # bash or python
    text: str

    @property
    def id(self) -> str:
        return self.source


def _blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text[: m.start()].count("\n") + 1
            found.append(Block(f"{path.relative_to(REPO)}:{line}", m.group(1), m.group(2)))
    return found


def _commands(text: str) -> list[str]:
    """A bash block's commands, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split("#")[0].split()
        if words:
            commands.append(shlex.join(words))
    return commands


def why_not_run(command: str) -> str | None:
    """Why ``command`` cannot run in a test from a fresh folder, or None."""
    if "../shared" in command:
        return "needs ../shared"
    if "mesonet-data" in command or "runs/wild/" in command:
        return "needs the real-world media fetched into ~/.cache/mesonet-data (docs/wild-set.md)"
    for start, why in SKIPPED.items():
        if command.startswith(start):
            return why
    words = shlex.split(command)
    if any(PLACEHOLDER.search(w) for w in words) or any(w.startswith("[") for w in words):
        return "a placeholder"
    for word in words:  # a config file that names ../shared's data sets
        path = REPO / word
        if word.endswith(".toml") and path.is_file() and "../shared" in path.read_text():
            return f"needs ../shared (through {word})"
    return None


def _runnable(block: Block) -> list[str]:
    if block.kind == "python":
        return [block.text] if "../shared" not in block.text else []
    return [c for c in _commands(block.text) if why_not_run(c) is None]


BLOCKS = [b for b in _blocks() if _runnable(b)]


def _param(block: Block):
    """The block as a test case; slow (``make test-all`` only) unless it is one ``mesonet
    predict`` (every other block starts several processes, a server, Ray or a training)."""
    commands = _runnable(block)
    quick = block.kind == "bash" and len(commands) == 1
    quick = quick and commands[0].startswith("mesonet predict")
    return pytest.param(block, id=block.id, marks=[] if quick else [pytest.mark.slow])


def _fresh_clone(folder: Path) -> None:
    """The files the examples read, as a fresh clone has them; the project's .venv linked."""
    shutil.copytree(REPO / "src" / "mesonet" / "samples", folder / "src" / "mesonet" / "samples")
    shutil.copytree(REPO / "configs", folder / "configs")
    (folder / ".venv").symlink_to(REPO / ".venv")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_script(command: str, port: int) -> str:
    """``mesonet serve ...`` started in the background on ``port``, then waited for."""
    words = shlex.split(command)
    for flag, value in (("--port", str(port)), ("--host", "127.0.0.1")):
        if flag in words:
            words[words.index(flag) + 1] = value
        else:
            words += [flag, value]
    return (
        f'{shlex.join(words)} > serve-{port}.log 2>&1 &\nSERVERS="$SERVERS $!"\n'
        f"for i in $(seq 600); do curl -sf http://127.0.0.1:{port}/healthz >/dev/null && break; "
        f"kill -0 $! || {{ cat serve-{port}.log; exit 1; }}; sleep 0.5; done\n"
    )


def _script(block: Block) -> str:
    """The block as one bash script; a ``curl`` line goes to the server the block started
    last (or, in a block of ``curl`` lines alone, to ``mesonet serve`` started for it)."""
    stop = 'rc=$?; [ -z "$SERVERS" ] || kill $SERVERS 2>/dev/null; exit $rc'
    lines = ["set -euo pipefail", "SERVERS=", f"trap '{stop}' EXIT"]
    commands = _runnable(block)
    if any(c.startswith("curl") for c in commands) and not any(
        c.startswith("mesonet serve") for c in commands
    ):
        commands = ["mesonet serve", *commands]
    port = 0
    for command in commands:
        if command.startswith("mesonet serve"):
            port = _free_port()
            lines.append(_serve_script(command, port))
        elif command.startswith("curl"):
            command = re.sub(r"http://127\.0\.0\.1:\d+", f"http://127.0.0.1:{port}", command)
            lines.append(command.replace("curl ", "curl -sSf ", 1))
        else:
            lines.append(command)
    return "\n".join(lines) + "\n"


def test_the_blocks_are_found_and_each_dropped_line_has_a_reason():
    sources = {b.source.split(":")[0] for b in BLOCKS}
    assert {"README.md", "docs/models.md", "docs/training.md"} <= sources
    readme = [c for b in _blocks() if b.source.startswith("README") for c in _commands(b.text)]
    assert "mesonet train src/mesonet/samples --out runs/smoke --epochs 1" in readme
    assert why_not_run("mesonet calibrate MODEL VALIDATION_DATA --out c.safetensors") == (
        "a placeholder"
    )
    assert why_not_run("mesonet train --config configs/mix-meso4.toml --out r").startswith(
        "needs ../shared"
    )
    assert why_not_run("mesonet predict src/mesonet/samples -r") is None
    assert why_not_run("mesonet predict ~/.cache/mesonet-data/wild-dev -r").startswith(
        "needs the real-world media"
    )


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_the_documented_commands_run_from_a_fresh_folder(block, tmp_path):
    _fresh_clone(tmp_path)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    if block.kind == "python":
        argv = [sys.executable, "-c", block.text]
    else:
        argv = ["bash", "-c", _script(block)]
    started = time.monotonic()
    run = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    assert run.returncode == 0, (
        f"{block.source} failed after {time.monotonic() - started:.0f} s:\n"
        f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )
