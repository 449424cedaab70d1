"""Rebuild the bundled sample: digit PNGs, three checkpoints and their figures.

Run from the repository root: ``python sample_data/build_sample.py`` (CPU only, deterministic).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from core.engine.nets import DigitsCNN, DigitsWideMLP  # noqa: E402

DATA = HERE / "digits"
CKPTS = HERE / "checkpoints"
CLASS_NAMES = [str(d) for d in range(10)]
SIZE = 32
RARE_DIGIT = "8"  # rare in the imbalanced model's training split
# Training images of RARE_DIGIT it keeps (others have ~125). With 2-10 kept the CNN never
# predicts an 8 at all (recall 0, precision undefined); 20 gives a low but non-zero recall.
RARE_KEEP = 20
# 512 wide, not 2048: keeps overfit.safetensors at 2 MB; 512 sine features already memorise.
LEAKS = 6  # training images copied (brightened) into test/, for the Leakage page
LEAK_BRIGHTEN = 3  # grey levels added to each leaked copy: a near-copy, not a duplicate
MLP_WIDTH = 512
# metadata.csv: every image gets a scanner and a writer (seeded). The DEGRADED scanner's TEST
# images come out skewed and dimmer (train is untouched, so the checkpoints do not change): the
# Slices page and the weak-segment search should find it. "writer" is noise: nothing to find.
# The degraded scanner is the small one (10% of images) and the damage mild, so the good model
# stays good on every class (98% test accuracy; no class's recall more than 5 points below
# train, the overfitting check's threshold) while failing about 1 in 8 of that scanner's
# images. Darkening and blurring all of one in four scanners (tried first) put the good model's
# precision on '9' at 84%; blur alone barely hurts it; a skew spreads the errors over classes.
SCANNERS = ("A", "B", "C", "D")
SCANNER_SHARE = (0.3, 0.3, 0.3, 0.1)  # of all images, drawn per image
DEGRADED: str | None = "D"
DARKEN = 0.9  # pixel values scaled by this (a dimmer lamp)
SKEW = 11.0  # degrees the page is rotated (a skewed feed); bilinear, black fill
WRITERS = tuple(f"w{i:02d}" for i in range(1, 13))
# Std of the frozen first layer: higher = sharper kernel = more memorisation, lower test accuracy.
MLP_SCALE = 0.1325
DESCRIPTIONS = {
    "good": "A small CNN trained on the whole train split: a healthy model on every digit.",
    "overfit": "A wide MLP on frozen sharp sine features whose head memorises the train split: "
    "near-perfect train accuracy, much lower test accuracy.",
    "imbalanced": f"A small CNN trained with digit {RARE_DIGIT} rare ({RARE_KEEP} training images, "
    f"about 125 for each other digit): high accuracy, but it seldom recognises digit {RARE_DIGIT}.",
}


def write_dataset() -> None:
    """Write digits/{train,test}/<digit>/<index>.png from scikit-learn's bundled digits."""
    digits = load_digits()
    index = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(
        index, test_size=0.3, stratify=digits.target, random_state=0
    )
    rng = np.random.default_rng(0)  # its own generator: the split above is unchanged
    scanner = rng.choice(SCANNERS, len(index), p=SCANNER_SHARE)
    writer = rng.choice(WRITERS, len(index))
    shutil.rmtree(DATA, ignore_errors=True)
    rows = ["path,scanner,writer"]
    for split, idx in (("train", train_idx), ("test", test_idx)):
        for i in sorted(idx):
            pixels = np.round(digits.images[i] * 255.0 / 16.0).astype(np.uint8)
            image = Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
            if split == "test" and scanner[i] == DEGRADED:
                image = degrade(image)
            folder = DATA / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:05d}.png")
            rows.append(f"{split}/{digits.target[i]}/{i:05d}.png,{scanner[i]},{writer[i]}")
    leaks = sorted(train_idx)[:LEAKS]
    write_leaks(leaks, digits)
    # a leaked copy carries its source's metadata (it is the same scan)
    rows += [f"test/{digits.target[i]}/leak-{i:05d}.png,{scanner[i]},{writer[i]}" for i in leaks]
    (DATA / "metadata.csv").write_text("\n".join(rows) + "\n")


def degrade(image: Image.Image) -> Image.Image:
    """Return the image darker (x DARKEN) and rotated by SKEW degrees: a worn scanner."""
    dark = np.round(np.asarray(image, dtype=np.float64) * DARKEN).astype(np.uint8)
    return Image.fromarray(dark).rotate(SKEW, resample=Image.Resampling.BILINEAR, fillcolor=0)


def write_leaks(indices: list[int], digits) -> None:  # noqa: ANN001 - sklearn Bunch
    """Copy a few training images, slightly brightened, into test/: the leakage lesson."""
    for i in indices:
        src = DATA / "train" / str(digits.target[i]) / f"{i:05d}.png"
        pixels = np.asarray(Image.open(src), dtype=np.int16) + LEAK_BRIGHTEN
        copy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        copy.save(DATA / "test" / str(digits.target[i]) / f"leak-{i:05d}.png")


def read_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (pixels in [0, 1] of shape (N, 1, 32, 32), labels of shape (N,)) read from PNGs."""
    images, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        for path in sorted((DATA / split / name).glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).unsqueeze(1)
    return x, torch.tensor(labels)


def shift(x: torch.Tensor, max_px: int, gen: torch.Generator) -> torch.Tensor:
    """Return x (N, 1, H, W) with each image moved by up to max_px pixels, zero-filled."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_px,) * 4)
    offsets = torch.randint(0, 2 * max_px + 1, (n, 2), generator=gen)
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
    )


def train_cnn(
    x: torch.Tensor,
    y: torch.Tensor,
    norm: tuple[float, float],
    *,
    seed: int,
    epochs: int = 30,
    max_shift: int = 2,
) -> DigitsCNN:
    """Return a DigitsCNN trained on pixels x (N, 1, 32, 32) in [0, 1] with labels y (N,)."""
    torch.manual_seed(seed)  # weight init
    gen = torch.Generator().manual_seed(seed)  # order and shifts
    model = DigitsCNN(num_classes=len(CLASS_NAMES), in_channels=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(y) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for batch in order.split(64):
            xb = (shift(x[batch], max_shift, gen) - norm[0]) / norm[1]
            loss = nn.functional.cross_entropy(model(xb), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def fit_overfit_mlp(
    x: torch.Tensor, y: torch.Tensor, norm: tuple[float, float], *, seed: int
) -> DigitsWideMLP:
    """Return a DigitsWideMLP whose frozen sine features are sharp and whose head memorises y."""
    gen = torch.Generator().manual_seed(seed)
    model = DigitsWideMLP(
        num_classes=len(CLASS_NAMES), in_channels=1, input_size=SIZE, width=MLP_WIDTH
    )
    first = model.features[1]
    with torch.no_grad():
        first.weight.copy_(torch.randn(first.weight.shape, generator=gen) * MLP_SCALE)
        first.bias.copy_(torch.rand(first.bias.shape, generator=gen) * 2 * np.pi)
        feats = model.features((x - norm[0]) / norm[1]).double()
        design = torch.cat([feats, torch.ones(len(y), 1, dtype=torch.float64)], dim=1)
        targets = nn.functional.one_hot(y, len(CLASS_NAMES)).double()
        # Least squares on one-hot targets: sharp features let it fit almost every label.
        solution = torch.linalg.lstsq(design, targets, driver="gelsd").solution
        model.classifier.weight.copy_(solution[:-1].T.float())
        model.classifier.bias.copy_(solution[-1].float())
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, norm: tuple[float, float]) -> torch.Tensor:
    """Return predicted labels (N,) for pixels x (N, 1, 32, 32) in [0, 1]."""
    return torch.cat([model((xb - norm[0]) / norm[1]).argmax(1) for xb in x.split(256)])


def evaluate(model: nn.Module, splits: dict[str, tuple], norm: tuple[float, float]) -> dict:
    """Return train/test accuracy and per-class test recall of model, rounded to 4 decimals."""
    pred = {split: predict(model, x, norm) for split, (x, _) in splits.items()}
    out = {
        f"{s}_accuracy": round((pred[s] == y).float().mean().item(), 4)
        for s, (_, y) in splits.items()
    }
    y = splits["test"][1]
    recall = {
        n: (pred["test"][y == k] == k).float().mean().item() for k, n in enumerate(CLASS_NAMES)
    }
    return {**out, "test_recall": {n: round(r, 4) for n, r in recall.items()}}


def save_checkpoint(
    model: nn.Module, name: str, architecture: str, description: str, norm: tuple[float, float]
) -> None:
    """Write checkpoints/<name>.safetensors with ClassLens metadata."""
    meta = {
        "architecture": architecture,
        "class_names": CLASS_NAMES,
        "preprocessing": {
            "image_size": SIZE,
            "channels": 1,
            "mean": [norm[0]],
            "std": [norm[1]],
            "resize": "stretch",
        },
        "description": description,
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(CKPTS / f"{name}.safetensors"), metadata={"classlens": json.dumps(meta)})


def table(figures: dict) -> str:
    """Return a markdown table of the figures, one row per checkpoint."""
    rows = [
        "| checkpoint | architecture | train accuracy | test accuracy | lowest test recall |",
        "|---|---|---|---|---|",
    ]
    for name, f in figures["checkpoints"].items():
        worst = min(f["test_recall"], key=f["test_recall"].get)
        rows.append(
            f"| `{name}.safetensors` | {f['architecture']} | {f['train_accuracy']:.1%} "
            f"| {f['test_accuracy']:.1%} | {f['test_recall'][worst]:.1%} (digit {worst}) |"
        )
    return "\n".join(rows)


def check(figures: dict) -> None:
    """Exit with a message if a checkpoint misses the behaviour the sample exists to show."""
    good, over, imb = (figures["checkpoints"][k] for k in ("good", "overfit", "imbalanced"))
    gap = over["train_accuracy"] - over["test_accuracy"]
    rare_recall = imb["test_recall"][RARE_DIGIT]
    failures = [
        message
        for ok, message in [
            (good["test_accuracy"] >= 0.97, f"good test accuracy {good['test_accuracy']} < 0.97"),
            # every class within 5 points of train (the overfitting check), even on scanner D
            (min(good["test_recall"].values()) >= 0.95, f"good test recall {good['test_recall']}"),
            (over["train_accuracy"] >= 0.99, f"overfit train accuracy {over['train_accuracy']}"),
            (gap >= 0.08, f"overfit train-test gap {gap:.4f} < 0.08"),
            (imb["test_accuracy"] >= 0.88, f"imbalanced test accuracy {imb['test_accuracy']}"),
            (rare_recall < 0.30, f"imbalanced recall of {RARE_DIGIT} {rare_recall} >= 0.30"),
        ]
        if not ok
    ]
    if failures:
        raise SystemExit("sample misses its targets: " + "; ".join(failures))


README = """# Bundled sample

The default data ClassLens opens with, rebuilt by `python sample_data/build_sample.py` (from the
repository root, CPU only, deterministic, a few minutes).

- `digits/{{train,test}}/<digit>/<index>.png`: scikit-learn's bundled 8x8 digits, upscaled to
  32x32 grayscale (bicubic); stratified 70/30 split, `random_state=0`; `<index>` is the position
  in `sklearn.datasets.load_digits()`.
- `digits/metadata.csv`: a `scanner` (A-D; D is the small one, about 10% of images) and a
  `writer` (w01-w12) per image, seeded. Scanner {degraded}'s **test** images are degraded when
  the sample is built: pixel values x {darken} and rotated {skew} degrees (a dimmer lamp and a
  skewed feed), so the good model does measurably worse on them and the Slices page finds it;
  the writer is noise. `--data-only` rewrites the images, metadata and figures without
  retraining (the train split, and so the checkpoints, do not change).
- `checkpoints/*.safetensors`: three models; their metadata (`classlens` key) holds the
  architecture, class names, preprocessing (mean {mean}, std {std}) and a description.
  - `good`: a small CNN, healthy on every class.
  - `overfit`: a wide sine-feature MLP that memorises the train split.
  - `imbalanced`: the same CNN trained with digit RARE rare ({keep} training images, about
    125 for each other digit).
- `figures.json`: the accuracies and per-class test recall below, as the script measured them.
  Train accuracy is always on the whole train split (all RAREs included for `imbalanced`).

{table}
"""


def load_checkpoints() -> list[tuple[str, str, nn.Module]]:
    """Return the stored checkpoints as (name, architecture, model), untouched on disk."""
    from safetensors.torch import load_file

    out = []
    for name, arch in (
        ("good", "digits_cnn"),
        ("overfit", "digits_wide_mlp"),
        ("imbalanced", "digits_cnn"),
    ):
        if arch == "digits_cnn":
            model: nn.Module = DigitsCNN(num_classes=len(CLASS_NAMES), in_channels=1)
        else:
            model = DigitsWideMLP(
                num_classes=len(CLASS_NAMES), in_channels=1, input_size=SIZE, width=MLP_WIDTH
            )
        model.load_state_dict(load_file(str(CKPTS / f"{name}.safetensors")))
        out.append((name, arch, model.eval()))
    return out


def main(data_only: bool = False) -> None:
    """Rebuild digits/ (and metadata.csv), checkpoints/, figures.json and README.md.

    data_only: keep the checkpoints as they are (the train split they learnt from does not
    change) and only rewrite the images, metadata and figures.
    """
    start = time.time()
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    write_dataset()
    splits = {split: read_split(split) for split in ("train", "test")}
    x, y = splits["train"]
    norm = (round(x.double().mean().item(), 4), round(x.double().std().item(), 4))
    rare = CLASS_NAMES.index(RARE_DIGIT)
    keep = (y != rare) | (torch.cumsum(y == rare, 0) <= RARE_KEEP)
    if data_only:
        models = load_checkpoints()
    else:
        models = [  # (name, architecture, model)
            ("good", "digits_cnn", train_cnn(x, y, norm, seed=0)),
            ("overfit", "digits_wide_mlp", fit_overfit_mlp(x, y, norm, seed=0)),
            ("imbalanced", "digits_cnn", train_cnn(x[keep], y[keep], norm, seed=0)),
        ]
        shutil.rmtree(CKPTS, ignore_errors=True)
        CKPTS.mkdir()
    figures: dict = {"mean": norm[0], "std": norm[1], "checkpoints": {}}
    for name, arch, model in models:
        if not data_only:
            save_checkpoint(model, name, arch, DESCRIPTIONS[name], norm)
        figures["checkpoints"][name] = {"architecture": arch, **evaluate(model, splits, norm)}
    figures["checkpoints"]["imbalanced"]["rare_class"] = RARE_DIGIT
    (HERE / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    readme = README.format(
        mean=norm[0],
        std=norm[1],
        keep=RARE_KEEP,
        table=table(figures),
        degraded=DEGRADED,
        darken=DARKEN,
        skew=SKEW,
    )
    (HERE / "README.md").write_text(readme.replace("RARE", RARE_DIGIT))
    print(table(figures))
    print(f"mean {norm[0]}, std {norm[1]}; built in {time.time() - start:.0f} s")
    check(figures)


if __name__ == "__main__":
    main(data_only="--data-only" in sys.argv[1:])
