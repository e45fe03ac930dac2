"""The one way Spyglass opens an ONNX model: a CPU session sized for a server."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from spyglass.errors import ConfigError


def cpu_session(path: Path, threads: int, what: str = "encoder model") -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads and no inter-op pool.

    The memory arena is off: it keeps the peak of the largest batch ever run (1.3 GB
    after 64 x 256 tokens, measured) in every worker for good; without it, memory
    goes back after a big batch. A model that does not load is a ``ConfigError``
    naming ``what`` (the setting to fix).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise ConfigError(f"{what}: cannot load {path}: {exc}") from exc
