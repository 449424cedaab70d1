"""ONNX checkpoints: exported from the sample CNN, sniffed by content, the same predictions as
PyTorch; external data and custom operator domains refused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from core.engine import evaluate, models, onnx_model
from core.errors import ClassLensError
from tests.conftest import SIZE, cli_inprocess, make_model


def export(model: torch.nn.Module, path: Path, *, dynamic: bool = True, props: dict | None = None):
    """Write ``model`` as ONNX (the TorchScript-based exporter: works offline, no onnxscript)."""
    axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 1, SIZE, SIZE),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes=axes,
        )
    if props:
        proto = onnx.load(str(path))
        helper.set_model_props(proto, props)
        onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    return make_model(num_classes=3, seed=3).eval()


def test_exported_cnn_loads_and_predicts_like_pytorch(tmp_path: Path, cnn: torch.nn.Module) -> None:
    names = ["bird", "cat", "dog"]
    meta = {"classlens.class_names": json.dumps(names), "classlens.architecture": "digits_cnn"}
    path = export(cnn, tmp_path / "model.bin", props=meta)  # the extension says nothing

    ckpt = models.load_checkpoint(path)

    assert (ckpt.format, ckpt.architecture, ckpt.class_names) == (
        "onnx",
        "digits_cnn",
        tuple(names),
    )
    assert (ckpt.in_channels, ckpt.preprocessing["image_size"], ckpt.native) == (1, SIZE, False)
    assert ckpt.module.external_runtime and ckpt.module.num_classes == 3
    x = torch.randn(5, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    got = ckpt.module(x)
    with torch.no_grad():
        want = cnn(x)
    assert got.dtype == torch.float32 and got.shape == (5, 3)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_sidecar_json_names_classes_and_wins_over_the_file(
    tmp_path: Path, cnn: torch.nn.Module
) -> None:
    path = export(cnn, tmp_path / "m.onnx", props={"classlens.class_names": '["a","b","c"]'})
    prep = {"image_size": 20, "mean": [0.5], "std": [0.25]}
    (tmp_path / "m.onnx.json").write_text(
        json.dumps({"class_names": ["x", "y", "z"], "preprocessing": prep})
    )
    ckpt = models.load_checkpoint(path)
    assert ckpt.class_names == ("x", "y", "z")
    assert ckpt.preprocessing["image_size"] == 20 and ckpt.preprocessing["std"] == [0.25]


def test_cli_evaluates_an_onnx_model_like_its_state_dict(
    tmp_path: Path, dataset: Path, cnn: torch.nn.Module, capsys: pytest.CaptureFixture
) -> None:
    from safetensors.torch import save_file

    onnx_path = export(cnn, tmp_path / "model.onnx")
    st_path = tmp_path / "model.safetensors"
    save_file(cnn.state_dict(), str(st_path))

    proc = cli_inprocess(capsys, "evaluate", "--checkpoint", onnx_path, "--data", dataset)

    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert json.loads((run_dir / "meta.json").read_text())["checkpoint"]["format"] == "onnx"
    got = evaluate.evaluate(onnx_path, dataset, device="cpu")  # the stored run, no inference
    # The ONNX input shape fixed the image size; give the state_dict the same preprocessing.
    prep = got.meta["preprocessing"]
    assert prep["image_size"] == SIZE
    ref = evaluate.evaluate(st_path, dataset, device="cpu", preprocessing_overrides=prep)
    assert got.path == run_dir
    a, b = got.predictions(), ref.predictions()
    assert list(a["path"]) == list(b["path"]) and list(a["y_pred"]) == list(b["y_pred"])
    np.testing.assert_allclose(got.probs(), ref.probs(), atol=2e-3)  # float16 storage


def _tiny_graph(tmp_path: Path, *, domain: str = "", external: bool = False) -> Path:
    """A hand-built classifier: Flatten -> MatMul(W) over a 1x2x2 image, 3 outputs."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["logits"]),
    ]
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        nodes.append(helper.make_node("Gelu", ["logits"], ["y"], domain=domain))
        opsets.append(helper.make_opsetid(domain, 1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 1, 2, 2])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, ["b", None])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / "tiny.onnx"
    if external:
        onnx.save(model, str(path), save_as_external_data=True, size_threshold=0, location="w.bin")
        assert (tmp_path / "w.bin").exists()
    else:
        onnx.save(model, str(path))
    return path


def test_a_hand_built_graph_with_dynamic_outputs_counts_them_by_running_once(
    tmp_path: Path,
) -> None:
    ckpt = models.load_checkpoint(_tiny_graph(tmp_path))
    assert ckpt.module.num_classes == 3 and ckpt.preprocessing["image_size"] == 2
    x = torch.arange(8, dtype=torch.float32).view(2, 1, 2, 2)
    want = x.view(2, 4) @ torch.arange(12, dtype=torch.float32).view(4, 3)  # by hand
    torch.testing.assert_close(ckpt.module(x), want)


def test_external_data_not_beside_the_file_is_refused_and_never_read(
    tmp_path: Path, monkeypatch
) -> None:
    # External data beside the file is read now (tests/test_compat.py); a location anywhere
    # else (here the same file by its absolute path) is still refused without opening it.
    path = _tiny_graph(tmp_path, external=True)
    proto = onnx.load(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = str((tmp_path / "w.bin").resolve())
    onnx.save(proto, str(path))
    opened: list[str] = []
    real_open = open

    def spy(file, *args, **kwargs):  # noqa: ANN001, ANN202
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    with pytest.raises(ClassLensError, match=r"tiny\.onnx refers to external data .*\(tensor 'W'"):
        models.load_checkpoint(path)
    assert not any(p.endswith("w.bin") for p in opened)


def test_custom_operator_domains_are_refused(tmp_path: Path) -> None:
    path = _tiny_graph(tmp_path, domain="com.evil.ops")
    with pytest.raises(ClassLensError, match=r"custom domain\(s\) com\.evil\.ops.*standard"):
        models.load_checkpoint(path)


def test_an_ai_onnx_ml_domain_is_standard(tmp_path: Path) -> None:
    proto = onnx.load(str(_tiny_graph(tmp_path)))
    proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    onnx_model.check_model(proto, "ok.onnx")  # no refusal


def test_a_damaged_onnx_file_is_a_clear_error(tmp_path: Path, cnn: torch.nn.Module) -> None:
    path = export(cnn, tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ClassLensError, match=r"m\.onnx"):
        models.load_checkpoint(path)
