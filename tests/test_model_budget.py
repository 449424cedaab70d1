"""A checkpoint cannot make the server allocate far beyond its own size (issue 13, item 8).

A small safetensors file whose head declares [1_000_000, 1] asks for a million classes; built
for real, resnet18 would then allocate 2 GB before loading the weights failed.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.engine import archs, models
from core.engine.model_budget import check_build_size, stored_numbers
from core.engine.nets import DigitsCNN
from core.errors import ClassLensError


@pytest.fixture()
def real_builds(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record every build of resnet18 that is not on the meta device (one that allocates)."""
    seen: list[dict] = []
    arch = archs.get("resnet18")

    def spy(**kwargs):  # noqa: ANN003
        if torch.get_default_device().type != "meta":
            seen.append(kwargs)
        return arch.build(**kwargs)

    monkeypatch.setitem(archs.registry(), "resnet18", dataclasses.replace(arch, build=spy))
    return seen


def test_a_huge_declared_head_is_refused_before_anything_is_built(
    tmp_path: Path, real_builds: list[dict]
) -> None:
    path = tmp_path / "head.safetensors"
    head = {"fc.weight": torch.zeros(1_000_000, 1, dtype=torch.float16), "fc.bias": torch.zeros(1)}
    save_file(head, str(path), metadata={"classlens": '{"architecture": "resnet18"}'})
    assert path.stat().st_size < 2_100_000
    with pytest.raises(ClassLensError, match=r"num_classes=1,000,000.*file holds 1,000,001"):
        models.load_checkpoint(path)
    assert real_builds == []  # refused from the meta count alone


def test_a_fitting_checkpoint_is_built(tmp_path: Path, real_builds: list[dict]) -> None:
    sd = archs.get("resnet18").build(num_classes=3).state_dict()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    ckpt = models.load_checkpoint(path, arch="resnet18")
    assert real_builds and all(k == {"num_classes": 3} for k in real_builds)
    assert ckpt.module.fc.out_features == 3


def test_the_bound_is_the_files_own_numbers_with_a_little_slack() -> None:
    arch = archs.get("digits_cnn")
    sd = DigitsCNN(num_classes=10, in_channels=1).state_dict()
    have = sum(t.numel() for t in sd.values())
    check_build_size(arch, {"num_classes": 10, "in_channels": 1}, sd)  # exact: fits
    # A module slightly larger than the file (a narrowed first convolution) still fits.
    check_build_size(arch, {"num_classes": 10, "in_channels": 3}, sd)
    with pytest.raises(ClassLensError, match=f"file holds {have:,}"):
        check_build_size(arch, {"num_classes": 200_000, "in_channels": 1}, sd)


def test_stride_zero_views_count_as_the_numbers_they_store(
    tmp_path: Path, real_builds: list[dict]
) -> None:
    # A 2 KB torch.save whose head *shows* [1_000_000, 512] over one stored number: counted by
    # shape it would pass the bound, and resnet18 would be built for a million classes (4.7 GB).
    sd = {
        "fc.weight": torch.zeros(1).expand(1_000_000, 512),
        "fc.bias": torch.zeros(1).expand(1_000_000),
    }
    path = tmp_path / "expanded.pt"
    torch.save({"state_dict": sd, "architecture": "resnet18"}, path)
    assert path.stat().st_size < 4_000
    with pytest.raises(ClassLensError, match=r"num_classes=1,000,000.*file holds 2,"):
        models.load_checkpoint(path)
    assert real_builds == []


def test_stored_numbers_counts_storages_not_views() -> None:
    w = torch.zeros(6, 4)
    assert stored_numbers({"a": w, "b": torch.zeros(3)}) == 27
    assert stored_numbers({"a": torch.zeros(1).expand(1000, 7)}) == 1
    assert stored_numbers({"a": w, "tied": w}) == 48  # tied weights: both keys count
    assert stored_numbers({f"k{i}": w for i in range(5)}) == 48  # ...but not more than twice


# The "server": a fresh process with what the dashboard has imported, asking core.engine.vetting
# to read each file; it prints each outcome and its own peak RSS (VmHWM) before and after.
SERVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import torch
from core.engine import models, vetting
from core.errors import ClassLensError
def hwm():
    line = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    return int(line.split()[1]) // 1024
out = {{"before": hwm(), "results": {{}}}}
for path in {paths!r}:
    try:
        vetting.vet(Path(path), path, trusted=False, arch=None, memory_mb=1024)
        out["results"][path] = "ok"
    except ClassLensError as exc:
        out["results"][path] = str(exc)
out["after"] = hwm()
print(json.dumps(out))
"""


def write_onnx_bomb(path: Path, numbers: int) -> None:
    """Write a 150-byte ONNX model whose output is ``numbers`` zeros (ConstantOfShape)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None])
    shape = numpy_helper.from_array(np.array([1, numbers], dtype=np.int64), "shape")
    zero = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"], value=zero)
    graph = helper.make_graph([node], "bomb", [x], [y], initializer=[shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.slow
def test_files_asking_for_gigabytes_are_refused_in_a_child_and_the_server_stays_small(
    tmp_path: Path,
) -> None:
    import json
    import subprocess
    import sys

    bomb = tmp_path / "bomb.onnx"
    write_onnx_bomb(bomb, 750_000_000)  # 3 GB of float32 when its outputs are counted
    assert bomb.stat().st_size < 1_000
    head = tmp_path / "head.safetensors"
    save_file({"fc.weight": torch.zeros(1_000_000, 1, dtype=torch.float16),
               "fc.bias": torch.zeros(1)}, str(head),
              metadata={"classlens": '{"architecture": "resnet18"}'})  # fmt: skip
    good = Path(__file__).resolve().parents[1] / "sample_data/checkpoints/good.safetensors"
    paths = [str(bomb), str(head), str(good)]
    root = str(Path(__file__).resolve().parents[1])
    code = SERVER.format(root=root, paths=paths)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=True)  # fmt: skip
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    results = out["results"]
    assert re.search(r"reading bomb\.onnx needed more than 1,024 MB", results[str(bomb)])
    assert re.search(r"num_classes=1,000,000.*file holds 1,000,001", results[str(head)])
    assert results[str(good)] == "ok"  # the limit admits a real checkpoint
    assert out["after"] - out["before"] < 100, out  # MB: the server never built either model
