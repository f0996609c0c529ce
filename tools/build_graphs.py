"""(Re)build the OpenVINO graphs shipped in the package, from the bundled weights.

    python tools/build_graphs.py            # make graphs: into src/mesonet/models/graphs/
    python tools/build_graphs.py --out DIR  # elsewhere (tests/test_graphs.py compares)

Every bundled single model (the image models and the video model, each
``NAME.safetensors`` in ``src/mesonet/models/weights/``) gets ``NAME.xml``, ``NAME.bin`` and
``NAME.graph.json`` (:func:`mesonet.export.export_graph`); every bundled ensemble card that
ships int8 statistics (the default's) gets its prebuilt int8 graph
``NAME.int8.xml``/``.bin`` and ``NAME.graph.json``; other ensembles get nothing (a lean
install fuses their members' graphs when it loads them). Graph files in the folder that no
bundled model makes any more are removed. Run it after bundling or changing a model, and
after upgrading OpenVINO or NNCF (the files record the versions that wrote them). The same
weights and versions give the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mesonet.export import SUFFIX, export_graph

GRAPHS = Path(__file__).resolve().parents[1] / "src" / "mesonet" / "models" / "graphs"
GRAPH_FILES = ("*.xml", "*.bin", "*" + SUFFIX)


def bundled_to_build() -> list[str]:
    """The bundled names that get graph files: every weights file, then every ensemble card
    shipping int8 statistics."""
    from mesonet.models import bundled_models, read_card

    names = [n for n, p in bundled_models().items() if p.suffix == ".safetensors"]
    cards = [n for n, p in bundled_models().items() if p.suffix == ".json"]
    return names + [
        n for n in cards if (read_card(bundled_models()[n]).int8 or {}).get("statistics")
    ]


def build(folder: Path, log=print) -> dict[str, str]:
    """Write every bundled graph into ``folder``; ``{graph file: sha256}`` of each graph."""
    digests: dict[str, str] = {}
    written: set[str] = set()
    for name in bundled_to_build():
        start = time.perf_counter()
        path = export_graph(name, folder, members=False)
        doc = json.loads(path.read_text())
        written.add(path.name)
        for key in ("graph", "int8"):
            if key in doc:
                entry = doc[key]
                digests[entry["xml"]] = entry["sha256"]
                written.update((entry["xml"], entry["bin"]))
        size = sum((folder / f).stat().st_size for f in written if f.startswith(name + "."))
        log(f"{name}: {doc['kind']}, {size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s")
    for pattern in GRAPH_FILES:
        for stale in sorted(folder.glob(pattern)):
            if stale.name not in written:
                log(f"removed {stale.name}: no bundled model makes it")
                stale.unlink()
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=GRAPHS, help=f"default: {GRAPHS}")
    args = parser.parse_args(argv)
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
