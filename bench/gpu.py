"""GPU benchmark: pipeline vs bare forward pass, and both against the card's FLOP ceiling.

``python -m bench.gpu`` on a CUDA machine times, per model and precision, images/s of

- the pipeline: ``core.engine.evaluate.evaluate`` from PNG files to a stored run (loader workers
  decode on the CPU, uint8 pinned batches, normalisation, channels_last and autocast on the
  GPU);
- the bare forward pass: the same prepared model (same channels_last and autocast) over
  batches already on the GPU,

and converts each into achieved TFLOP/s (FLOPs per image from
``torch.utils.flop_counter.FlopCounterMode``, a multiply-add counting 2) as a fraction of
the card's dense peak for the precision (PEAK_TFLOPS, keyed by device name; fp32 convolutions
may use TF32 tensor cores, PyTorch's default for cuDNN, so fp32 is compared with the TF32
peak). Without CUDA it prints one "no CUDA device" line and exits 0.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Dense (no sparsity) peak TFLOP/s from the vendors' datasheets; the first name contained in
# torch.cuda.get_device_name() wins, so the specific variants come first.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},  # SXM
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.1, "fp16": 362.1},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
}
N_IMAGES = 2048  # 224x224 PNGs: ~1 s of resnet50 bf16 on an H100, enough to reach steady state
BATCH_SIZE = 256
PRECISIONS = ("fp32", "bf16")
MODELS = ("resnet18", "resnet50")


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Return the card's dense peak TFLOP/s for ``precision`` (fp32 as TF32 when cuDNN may
    use it), or None for a card not in PEAK_TFLOPS."""
    key = "tf32" if precision == "fp32" and torch.backends.cudnn.allow_tf32 else precision
    for name, peaks in PEAK_TFLOPS.items():
        if name in device_name:
            return peaks[key]
    return None


def flops_per_image(module: torch.nn.Module, channels: int, size: int) -> int:
    """Return the forward pass's FLOPs for one ``channels`` x ``size`` x ``size`` image
    (FlopCounterMode: a multiply-add is 2 FLOPs; element-wise ops are not counted)."""
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros((1, channels, size, size), device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(x)
    return int(counter.get_total_flops())


def time_bare(runner: object, batches: list[torch.Tensor], device: torch.device) -> float:
    """Return images/s of the prepared model alone over batches already on the GPU."""
    from core.engine import inference

    forward = inference._Forward(runner, device, shrink=False)
    with torch.inference_mode():
        forward(batches[0])  # warm-up: cuDNN autotuning, allocator
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x in batches:
            forward(x)
        torch.cuda.synchronize()
        return sum(len(x) for x in batches) / (time.perf_counter() - t0)


def _share(flops: int, images_per_s: float, peak: float | None) -> str:
    """Return achieved FLOP/s as a percentage of ``peak`` TFLOP/s ("n/a" for unknown cards)."""
    return f"{flops * images_per_s / 1e12 / peak:6.1%}" if peak else "   n/a"


def main() -> int:
    """Print, per model and precision, pipeline and forward images/s and % of peak."""
    if not torch.cuda.is_available():
        print("no CUDA device: bench/gpu.py measures nothing on this machine (run it on a GPU)")
        return 0
    from bench.inference import time_pipeline, torchvision_checkpoint, write_pngs
    from core.engine import data, inference, models
    from core.engine.preprocessing import Preprocessing

    os.environ.setdefault("CLASSLENS_CACHE_DIR", tempfile.mkdtemp(prefix="cl-bench-cache-"))
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    work = Path(tempfile.mkdtemp(prefix="cl-bench-gpu-"))
    t0 = time.perf_counter()
    dataset = write_pngs(work / "pngs", N_IMAGES)
    print(f"{name}: {N_IMAGES} PNGs written in {time.perf_counter() - t0:.0f} s; batch "
          f"{BATCH_SIZE}, {os.cpu_count()} CPU cores, torch {torch.__version__}")  # fmt: skip
    for arch in MODELS:
        ckpt_path = torchvision_checkpoint(work / f"{arch}.safetensors", arch)
        ckpt = models.load_checkpoint(ckpt_path)
        prep = Preprocessing(**ckpt.preprocessing)
        ds = data.scan(dataset)
        pixels = torch.stack(
            [torch.from_numpy(data.decode(ds.abspath(it), prep)) for it in ds.items]
        )
        flops = flops_per_image(ckpt.module, prep.channels, prep.image_size)
        for precision in PRECISIONS:
            runner = inference.prepare(ckpt.module, device, precision=precision)
            batches = [
                inference.normalise_batch(pixels[i : i + BATCH_SIZE], prep, device)
                for i in range(0, len(pixels), BATCH_SIZE)
            ]
            bare = max(time_bare(runner, batches, device) for _ in range(2))
            pipe = max(
                time_pipeline(
                    ckpt_path, dataset, "cuda", work, batch_size=BATCH_SIZE, precision=precision
                )[0]
                for _ in range(2)
            )
            peak = peak_tflops(name, precision)
            print(
                f"{arch:<9} {precision}  {flops / 1e9:5.2f} GFLOP/img  pipeline {pipe:8.0f} img/s "
                f"({_share(flops, pipe, peak)} of peak)  forward {bare:8.0f} img/s "
                f"({_share(flops, bare, peak)} of peak)  pipeline/forward {pipe / bare:4.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
