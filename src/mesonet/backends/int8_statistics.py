"""int8 quantisation from stored statistics: NNCF's post-training recipe split in two.

NNCF quantises a graph in two steps: it runs calibration crops through the graph to collect
statistics at each point it will quantise (activation ranges, and the means fast bias
correction needs), then inserts the quantisers and corrects the biases from those
statistics alone. :func:`quantize_graph` runs both steps (``statistics=None``) or only the
second from statistics collected before, and returns the statistics either way, so a
model's int8 graph can be rebuilt exactly where no calibration data is: the bundled default
ships its statistics (a few hundred kilobytes of per-channel figures, no image) and the
graph made from them equals the graph measured (``tests/test_int8.py``).

The statistics are keyed by the names of the graph's ops, so the graph must name its ops
the same way each time it is built (:func:`mesonet.backends.fused.name_ops`). They are
stored as one safetensors file, each tensor named ``<statistic key>/<field>`` with
:data:`SEPARATOR` between the two, and the metadata (a JSON string) saying what made them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

_ONE_AT_A_TIME = threading.Lock()
SEPARATOR = "\x1f"
"""Between a statistic's key (which contains ``/``) and its field in a tensor's name."""
METADATA_KEY = "mesonet_int8"

Statistics = dict[str, dict[str, Any]]
"""``{statistic key: {field: nncf Tensor}}``, as NNCF's statistics aggregator keys them."""


def quantize_graph(
    graph: Any,
    ignored: list[str],
    dataset: Any = None,
    statistics: Statistics | None = None,
    subset_size: int = 300,
) -> tuple[Any, Statistics]:
    """``(int8 graph, statistics)``: ``graph`` (an fp32 OpenVINO model) quantised as
    ``nncf.quantize`` does (preset MIXED, CPU, fast bias correction, the weights stored in
    int8), with the ops named in ``ignored`` and every ``MatMul`` left in fp32. The
    statistics come from ``dataset`` (an ``nncf.Dataset``) or are given."""
    if (dataset is None) == (statistics is None):
        raise ValueError("quantize_graph needs a dataset or statistics, not both")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    # NNCF draws progress bars on standard output, where records go (predict -f json); the
    # redirection is process-wide, so one quantisation at a time (they are CPU-bound anyway)
    with _ONE_AT_A_TIME, contextlib.redirect_stdout(io.StringIO()):
        return _quantize_graph(graph, ignored, dataset, statistics, subset_size)


def _quantize_graph(
    graph: Any, ignored: list[str], dataset: Any, statistics: Statistics | None, subset_size: int
) -> tuple[Any, Statistics]:
    import nncf
    from nncf.common.factory import StatisticsAggregatorFactory
    from nncf.openvino.graph.model_utils import remove_friendly_name_duplicates
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter
    from nncf.quantization.algorithms.post_training.algorithm import PostTrainingQuantization
    from openvino._offline_transformations import compress_quantize_weights_transformation

    graph = remove_friendly_name_duplicates(graph)
    algorithm = PostTrainingQuantization(
        preset=nncf.QuantizationPreset.MIXED,
        target_device=nncf.TargetDevice.CPU,
        subset_size=subset_size,
        fast_bias_correction=True,
        # not validated: the ops of a network kept whole include some NNCF does not list
        ignored_scope=nncf.IgnoredScope(names=ignored, types=["MatMul"], validate=False),
    )
    nncf_graph = GraphConverter.create_nncf_graph(graph)
    aggregator = StatisticsAggregatorFactory.create(graph, dataset)
    aggregator.register_statistic_points(algorithm.get_statistic_points(graph, nncf_graph))
    if statistics is None:
        aggregator.collect_statistics(graph, nncf_graph)
        statistics = _gathered(aggregator)
    else:
        _fill(aggregator, statistics)
    quantised = algorithm.apply(graph, nncf_graph, aggregator.statistic_points)
    compress_quantize_weights_transformation(quantised)
    return quantised, statistics


def _gathered(aggregator: Any) -> Statistics:
    out: Statistics = {}
    for _, point, collector in aggregator.statistic_points.get_tensor_collectors():
        statistic = collector.get_statistics()
        key = aggregator._get_statistics_key(statistic, point.target_point)
        out[key] = statistic.get_data(is_serialized=True)
    return out


def _fill(aggregator: Any, statistics: Statistics) -> None:
    """Set every registered statistic from ``statistics`` (NNCF's own loader builds each
    statistic empty first, which fails for the means bias correction uses)."""
    for _, point, collector in aggregator.statistic_points.get_tensor_collectors():
        kind = collector._stat_container
        statistic = kind.__new__(kind)
        key = aggregator._get_statistics_key(statistic, point.target_point)
        if key not in statistics:
            raise ValueError(f"the int8 statistics have nothing for {key}: made for another graph")
        statistic.load_data(statistics[key])
        collector.set_cache(statistic)


def save_statistics(path: str | Path, statistics: Statistics, metadata: dict[str, Any]) -> None:
    """Write ``statistics`` to the safetensors file ``path`` with ``metadata``."""
    from safetensors.numpy import save

    from mesonet.destinations import write_output

    tensors = {
        f"{key}{SEPARATOR}{field}": np.ascontiguousarray(np.asarray(value.data))
        for key, fields in statistics.items()
        for field, value in fields.items()
    }
    blob = save(tensors, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    write_output(Path(path), blob, "int8 statistics")


def load_statistics(path: str | Path) -> tuple[Statistics, dict[str, Any]]:
    """``(statistics, metadata)`` from a file :func:`save_statistics` wrote."""
    from nncf.tensor import Tensor
    from safetensors import safe_open

    statistics: Statistics = {}
    with safe_open(str(path), framework="numpy") as f:
        metadata = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
        for name in f.keys():  # noqa: SIM118 - safe_open is not iterable
            key, _, field = name.partition(SEPARATOR)
            statistics.setdefault(key, {})[field] = Tensor(f.get_tensor(name))
    return statistics, metadata
