"""Shared helpers of the speed benchmarks: models, timing, the machine's state, tables."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
KERAS = SHARED / "reference" / "mesonet-keras"
DFDC = SHARED / "datasets" / "dfdc-faces"
KERAS_FILES = {"meso4": "Meso4_DF.h5", "mesoinception4": "MesoInception_DF.h5"}
TF_PYTHON = Path(os.environ.get("MESONET_TF_PYTHON", "/work/tfenv/bin/python"))

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)


def load_bench_model(
    arch: str = "meso4", name_or_path: str | None = None, input_size: int | None = None
):
    """(model, description): the named model, the bundled one of ``arch``, or the authors'.

    Speed does not depend on the weights; accuracy checks (bf16) do, so the description
    says which weights were used. ``input_size`` (a backbone's input side) picks a bundled
    model of that size, or builds one.
    """
    from mesonet.models import bundled_models, load_model, read_card

    if name_or_path:
        model = load_model(name_or_path)
        return model, f"{model.card.name} ({name_or_path}, {model.card.input_size} px)"
    for name, path in bundled_models().items():
        size = read_card(path).input_size
        if name.startswith(arch + ".") and input_size in (None, size):
            return load_model(name), f"bundled {name}, {size} px"
    if arch == "efficientnet_lite0":
        from mesonet.models import create_model
        from mesonet.models.efficientnet import load_imagenet

        model = create_model(arch, input_size)
        load_imagenet(model)
        return model.eval(), f"ImageNet body, untrained head, {model.input_size} px"
    path = KERAS / "weights" / KERAS_FILES.get(arch, "-")
    if arch in KERAS_FILES and path.is_file():
        from mesonet.keras_import import convert_keras_weights

        return convert_keras_weights(path, arch=arch).eval(), f"authors' {path.name} (imported)"
    from mesonet.models import create_model

    return create_model(arch).eval(), "random initialisation (no weights found)"


def machine_note() -> str:
    """Cores, CPU, and a warning when something else is using the CPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = f"{cores} cores, {cpu}, load average {load:.2f} at start"
    busy = other_cpu_users()
    if busy:
        note += f"\nWARNING: the machine is loaded ({busy}): figures are pessimistic"
    return note


class CpuWatch:
    """How much of the machine's CPU other processes used while a benchmark ran.

    /proc/stat gives the busy time of every core; this process and its children account
    for their own share; the rest is someone else's. Printed under each table, so a loaded
    run is seen as such.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        busy = float("nan")
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            ticks = [int(v) for v in fields]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            busy = (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
        return time.monotonic(), busy, mine

    def others_share(self) -> float:
        """Fraction of all cores' time used by other processes since the start."""
        end = self._sample()
        wall = end[0] - self.start[0]
        cores = os.cpu_count() or 1
        others = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return max(0.0, others / (wall * cores)) if wall > 0 else float("nan")

    def note(self) -> str:
        share = self.others_share()
        text = f"other processes used {share:.0%} of the CPU during the run"
        return text + (" (LOADED: figures are pessimistic)" if share > 0.1 else "")


def other_cpu_users() -> str:
    """A short description of other processes using a lot of CPU right now ('' if none)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    me = os.getpid()
    busy = []
    for line in out.splitlines()[1:6]:
        pid, pcpu, args = line.strip().split(None, 2)
        if int(pid) != me and float(pcpu) > 30 and os.getppid() != int(pid):
            busy.append(f"pid {pid} at {pcpu}% CPU: {args[:60]}")
    return "; ".join(busy)


def timed(fn: Callable[[], object], items: int, repeats: int = 5, warmup: int = 2) -> float:
    """Median items per second of ``fn`` (which handles ``items`` items) over ``repeats`` runs."""
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(c) for c in header]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    rule = "-" * len(line(cells[0]))
    return "\n".join([title, rule, line(cells[0]), rule, *map(line, cells[1:]), rule])


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def python_for_child() -> str:
    return sys.executable
