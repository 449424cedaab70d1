"""ONNX checkpoints: parsed and checked before onnxruntime sees them, wrapped as a torch module.

ONNX is the safe way to bring any architecture: the file is a graph of standard operators and
nothing in it runs as Python. Two things could still reach outside the file: tensors stored as
*external data* are read here (never by the runtime) only from plain files beside the model
(``m.onnx.data``, as ``torch.onnx.export`` writes them) and are hashed into the run id; any
other location is refused; operators from *custom domains* (they need a native operator
library) are refused. Inputs (B, H, W, C) (Keras / tf2onnx) are transposed from ClassLens's
(B, C, H, W); a batch size fixed in the graph is met by splitting and padding batches.

Metadata (``metadata_props`` of the model, all optional; a sidecar ``<file>.json`` wins):

- ``classlens.class_names``: JSON list of class names, in output order;
- ``classlens.preprocessing``: JSON object like the other formats' (image_size, channels,
  mean, std, resize);
- ``classlens.architecture``: a name shown in the UI (default "onnx");
- ``classlens``: one JSON object with any of the keys above (as in .safetensors metadata);
- ``class_names``, ``classes`` or ``id2label`` (JSON, without the prefix): class names as other
  tools write them (``id2label``: ``{"0": "cat", ...}``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.engine.model_budget import is_allocation_failure
from core.errors import ClassLensError

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
META_PREFIX = "classlens."
PLAIN_KEYS = ("class_names", "classes", "id2label")  # JSON values, read without the prefix


def looks_like_onnx(head: bytes) -> bool:
    """Return whether ``head`` starts like an ONNX ModelProto (ir_version, then another field).

    Only a first filter: :func:`load` parses the whole file before trusting it.
    """
    # field 1 (ir_version) as a small varint, then a known ModelProto field tag
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 64 and head[2] in (
        0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A,
    )  # fmt: skip


class OnnxModule(nn.Module):
    """An onnxruntime session as a torch module: float32 (B, C, H, W) in, logits out."""

    # Read by inference: run as is (no channels_last, autocast or torch.compile).
    external_runtime = True

    def __init__(self, session: Any, input_name: str) -> None:
        super().__init__()
        self.session, self.input_name = session, input_name
        # One session is shared by every dashboard session through st.cache_resource.
        self._lock = threading.Lock()
        self.num_classes: int | None = None
        # the side of a fixed square input in the graph (None: dynamic), read by core.engine.probe
        self.fixed_image_size: int | None = None
        # "probabilities"/"log_probabilities" when the graph ends in Softmax/LogSoftmax
        self.final_activation: str | None = None

        # True when the graph takes (B, H, W, C) (Keras / tf2onnx): inputs are transposed
        self.channels_last_input = False
        # the batch size fixed in the graph (None: dynamic): batches are split and padded to it
        self.fixed_batch: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last_input:
            x = x.permute(0, 2, 3, 1)
        return in_fixed_batches(self._run, x, self.fixed_batch)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        with self._lock:
            out = self.session.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)


def in_fixed_batches(run: Any, x: torch.Tensor, batch: int | None) -> torch.Tensor:
    """Return ``run(x)`` for a model that only takes batches of exactly ``batch`` images: ``x``
    is split into such batches, the last padded with zeros, and the padding's rows dropped."""
    if batch is None or len(x) == batch:
        return run(x)
    outs = []
    for i in range(0, len(x), batch):
        part = x[i : i + batch]
        n = len(part)
        if n < batch:
            part = torch.cat([part, part.new_zeros((batch - n, *part.shape[1:]))])
        out = run(part)
        outs.append((out[0] if isinstance(out, (tuple, list)) else out)[:n])
    return torch.cat(outs)


def _node_graphs(nodes: Any) -> Any:
    """Yield every subgraph held by ``nodes`` (If/Loop/Scan bodies), depth first."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _graphs(graph: Any) -> Any:
    """Yield ``graph`` and every subgraph in it."""
    yield graph
    yield from _node_graphs(graph.node)


def _node_tensors(nodes: Any) -> Any:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sparse in attr.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)


def _tensors(graph: Any) -> Any:
    """Yield every tensor stored in ``graph`` itself (initializers, constant attributes)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def check_model(model: Any, name: str) -> None:
    """Refuse a ModelProto with external data references or operators outside the standard
    domains (both would make the runtime load something other than this file)."""
    import onnx

    graphs = list(_graphs(model.graph))
    for fn in model.functions:  # model-local functions: their bodies count too
        graphs += list(_node_graphs(fn.node))
    tensors = [t for g in graphs for t in _tensors(g)]
    tensors += [t for fn in model.functions for t in _node_tensors(fn.node)]
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            raise ClassLensError(
                f"{name} refers to external data (tensor {t.name!r} is stored in another "
                "file), which ClassLens does not load. Save the model as one file: "
                "onnx.save(model, path, save_as_external_data=False)."
            )
    domains = {op.domain for op in model.opset_import}
    domains |= {n.domain for g in graphs for n in g.node}
    for fn in model.functions:
        domains |= {fn.domain} | {n.domain for n in fn.node}
        domains |= {op.domain for op in fn.opset_import}
    custom = sorted(domains - STANDARD_DOMAINS)
    if custom:
        raise ClassLensError(
            f"{name} uses operators from custom domain(s) {', '.join(custom)}, which need a "
            "native operator library; ClassLens runs only standard ONNX operators "
            "(domains ai.onnx and ai.onnx.ml). Export the model without custom operators."
        )


def load_external_data(model: Any, path: Path) -> dict[str, str]:
    """Read into ``model`` the external data of its initializers when every file sits beside
    ``path`` (a plain file name, no folders, no symlink; inside the allowed roots when set);
    return {file name: sha256} ({} without external data). Anything else stays external and
    is refused by :func:`check_model`."""
    import hashlib

    import onnx
    from onnx.external_data_helper import load_external_data_for_tensor

    from core.hosting import safety

    wanted = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if not wanted:
        return {}
    digests: dict[str, str] = {}
    for tensor in wanted:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        beside = path.parent / location
        plain = location and Path(location).name == location and location not in (".", "..")
        if not plain or not beside.is_file() or beside.is_symlink():
            raise ClassLensError(
                f"{path.name} refers to external data {location!r} (tensor {tensor.name!r}) "
                "that is not a file beside it. Put the data file in the same folder, or save "
                "the model as one file: onnx.save(model, path, save_as_external_data=False)."
            )
        safety.check_server_path(beside)  # the same roots as the checkpoint itself
        if location not in digests:
            digests[location] = hashlib.sha256(beside.read_bytes()).hexdigest()
        load_external_data_for_tensor(tensor, str(path.parent))
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
    return digests


def _metadata(model: Any) -> dict[str, Any]:
    """Return the raw ClassLens metadata from ``metadata_props`` (keys without the prefix)."""
    props = {p.key: p.value for p in model.metadata_props}
    raw: dict[str, Any] = {}
    if "classlens" in props:
        raw["classlens"] = props["classlens"]
    for key in PLAIN_KEYS:  # written by other tools without the prefix; the prefix wins
        if key in props:
            raw[key] = props[key]
    for key, value in props.items():
        if key.startswith(META_PREFIX):
            raw[key[len(META_PREFIX) :]] = value
    return raw


def _dims(value_info: Any) -> list[int | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


# Operators that pass values through unchanged (a Softmax before them is still the last step).
_PASS_THROUGH = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"})
_FINAL = {"Softmax": "probabilities", "LogSoftmax": "log_probabilities"}


def final_activation(graph: Any) -> str | None:
    """Return "probabilities"/"log_probabilities" when the graph's first output comes from a
    Softmax/LogSoftmax node (through shape-only operators), else None."""
    producer = {out: node for node in graph.node for out in node.output}
    name = graph.output[0].name
    for _ in range(16):
        node = producer.get(name)
        if node is None or node.op_type not in _PASS_THROUGH or not node.input:
            break
        name = node.input[0]
    return _FINAL.get(node.op_type) if node is not None else None


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return [*wanted, "CPUExecutionProvider"]


def load(path: Path, raw_meta_out: dict[str, Any]) -> tuple[OnnxModule, dict[str, Any]]:
    """Return (module, facts) for the ONNX file at ``path``; facts: in_channels, image_size,
    num_classes (None when unknown). ``raw_meta_out`` receives the file's ClassLens metadata."""
    import onnx
    import onnxruntime as ort
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise ClassLensError(
            f"{path.name} is not a readable ONNX model ({type(exc).__name__}). "
            "Export it again with torch.onnx.export."
        ) from None
    external = load_external_data(model, path)
    check_model(model, path.name)
    raw_meta_out.update(_metadata(model))
    stored = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in stored]
    if len(inputs) != 1 or not model.graph.output:
        raise ClassLensError(
            f"{path.name} has {len(inputs)} inputs; ClassLens runs image classifiers with one "
            "input (batch, channels, height, width)."
        )
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise ClassLensError(
            f"{path.name}'s input has {len(dims)} dimensions; an image classifier takes 4 "
            "(batch, channels, height, width)."
        )
    # Keras / tf2onnx graphs take (batch, height, width, channels): channels last and 1 or 3,
    # and the second dimension cannot be channels.
    nhwc = dims[3] in (1, 3) and dims[1] not in (1, 3)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    try:
        # From the parsed, checked bytes: the runtime never opens another file.
        session = ort.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=_providers()
        )
    except Exception as exc:  # invalid graph: onnxruntime raises its own exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ClassLensError(
            f"onnxruntime cannot run {path.name} ({first}). Export it again with a recent opset."
        ) from None
    module = OnnxModule(session, inputs[0].name).eval()
    batch, channels, height, width = dims
    if nhwc:
        height, width, channels = dims[1], dims[2], dims[3]
    module.channels_last_input = nhwc
    module.fixed_batch = batch if batch and batch > 0 else None
    out_dims = _dims(model.graph.output[0])
    module.num_classes = out_dims[-1] if len(out_dims) == 2 and out_dims[-1] else None
    module.final_activation = final_activation(model.graph)
    facts = {
        "in_channels": channels,
        "image_size": height if height and height == width else None,
        "input_layout": "NHWC" if nhwc else "NCHW",
        "fixed_batch": module.fixed_batch,
        "external_data": external,
    }
    module.fixed_image_size = height if height and height == width else None
    return module, facts


def count_outputs(module: OnnxModule, channels: int, image_size: int) -> int | None:
    """Return the model's number of outputs, running one blank image when the shape is dynamic
    (None when that run fails: inference then reports the wrong input shape clearly)."""
    if module.num_classes is None:
        try:
            out = module(torch.zeros((1, channels, image_size, image_size)))
        except Exception as exc:  # onnxruntime's own errors: a wrong guess of channels or size
            if is_allocation_failure(exc):  # not a guess: the graph asks for too much memory
                raise
            return None
        module.num_classes = int(out.shape[-1])
    return module.num_classes
