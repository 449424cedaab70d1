"""The CLI: ``python -m core evaluate ...``, ``python -m core runs``, ``python -m core archs``.

Progress goes to stderr, the run directory is the last line of stdout, and bad input exits
non-zero with one ``error: ...`` line on stderr -- never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from core.errors import ClassLensError


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.485,0.456,0.406, got {text!r}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers like 1,2,3, got {text!r}"
        ) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, as argparse does, plus a hint
        self.exit(2, f"error: {message} (see python -m core {self.prog.split()[-1]} --help)\n")


# Terminal control: C0 controls but tab and newline, DEL, and C1 (a lone ESC starts a sequence
# that can recolour, retitle or rewrite the terminal). Names in runs and files reach the CLI's
# output, so every character of it passes through here.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _Printable:
    """A text stream that writes everything but terminal control characters (a progress
    bar's leading carriage return, written with its line, stays)."""

    def __init__(self, stream) -> None:  # noqa: ANN001
        self._stream = stream

    def write(self, text: str) -> int:
        lead = "\r" if text.startswith("\r") else ""
        return self._stream.write(lead + _CONTROL.sub("", text[len(lead) :]))

    def __getattr__(self, name: str):  # noqa: ANN204 - flush, isatty, fileno, encoding...
        return getattr(self._stream, name)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core", description="ClassLens engine.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ev = sub.add_parser("evaluate", help="run a checkpoint over an image folder, store the run")
    ev.add_argument("--checkpoint", required=True, type=Path, help="model file")
    ev.add_argument("--data", required=True, type=Path, help="ImageFolder dataset root")
    ev.add_argument("--arch", help="architecture name (default: metadata, else detected)")
    ev.add_argument("--image-size", type=int, help="square input side in pixels")
    ev.add_argument("--mean", type=_floats, help="per-channel mean, e.g. 0.485,0.456,0.406")
    ev.add_argument("--std", type=_floats, help="per-channel std, e.g. 0.229,0.224,0.225")
    ev.add_argument("--channels", type=int, choices=(1, 3), help="model input channels")
    ev.add_argument("--resize", choices=("stretch", "center_crop"), help="resize mode")
    ev.add_argument(
        "--no-probe",
        action="store_true",
        help="do not probe an image size or normalisation the checkpoint does not declare "
        "(defaults are used, and recorded as such)",
    )
    ev.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    ev.add_argument(
        "--batch-size",
        type=int,
        help="images per forward pass (default: 64 on CPU; on CUDA the largest that fits)",
    )
    ev.add_argument("--workers", type=int, help="DataLoader workers (default: by size)")
    ev.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="forward pass under bf16/fp16 autocast (stored as its own run; default fp32)",
    )
    ev.add_argument(
        "--compile", action="store_true", help="torch.compile the model (pays off on big jobs)"
    )
    ev.add_argument(
        "--dist-timeout",
        type=float,
        default=1800.0,
        help="under torchrun: seconds a rank waits for the others before giving up",
    )
    ev.add_argument("--runs-dir", type=Path, help="run store (default: $CLASSLENS_RUNS_DIR)")
    ev.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow formats that run code from the file (TorchScript, .pt2, pickled modules)",
    )
    ev.add_argument(
        "--metadata",
        type=Path,
        help="per-image metadata CSV/Parquet keyed by a 'path' column relative to --data "
        "(default: metadata.csv or metadata.parquet in --data, when there)",
    )
    sl = sub.add_parser("slices", help="print a run's weak segments (slices worse than the rest)")
    sl.add_argument("run", help="run folder or run id")
    sl.add_argument("--metadata", type=Path, help="attach this metadata file first")
    sl.add_argument("--split", default="test", help="split to judge (default test)")
    sl.add_argument("--json", action="store_true", help="print JSON instead of sentences")
    sl.add_argument("--runs-dir", type=Path, help="run store for a run id")
    rb = sub.add_parser(
        "robustness", help="re-evaluate a run on corrupted copies of a split; print accuracy"
    )
    rb.add_argument("run", help="run folder or run id")
    rb.add_argument("--split", default="test", help="split to corrupt (default test)")
    rb.add_argument(
        "--corruptions",
        type=_names,
        help="comma-separated corruptions (default all: python -m core robustness --help)",
    )
    rb.add_argument(
        "--severities",
        type=_ints,
        default=(1, 2, 3, 4, 5),
        help="comma-separated severities 0..5 (default 1,2,3,4,5; hflip has only 1)",
    )
    rb.add_argument(
        "--sample", type=int, help="a stratified sample of this many images (default: all)"
    )
    rb.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    rb.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rb.add_argument("--runs-dir", type=Path, help="run store for a run id")
    rs = sub.add_parser("runs", help="list stored runs with headline metrics")
    rs.add_argument("--runs-dir", type=Path)
    sub.add_parser("archs", help="list the architectures --arch accepts")
    return p


def _evaluate(args: argparse.Namespace) -> int:
    from core.engine import distributed
    from core.engine.evaluate import evaluate
    from core.engine.progress import ProgressBar

    overrides = {
        "image_size": args.image_size,
        "mean": args.mean,
        "std": args.std,
        "channels": args.channels,
        "resize": args.resize,
    }
    options = dict(
        arch=args.arch,
        preprocessing_overrides=overrides,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        runs_dir=args.runs_dir,
        trust_checkpoint=args.trust_checkpoint,
        precision=args.precision,
        compile=args.compile,
        probe_preprocessing=not args.no_probe,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    if distributed.launched():  # under torchrun: this process evaluates one shard
        run = distributed.evaluate_sharded(
            args.checkpoint,
            args.data,
            timeout_s=args.dist_timeout,
            progress=ProgressBar(),
            **options,
        )
        if run is None:  # not rank 0: its shard is stored, rank 0 prints the run
            return 0
    else:
        run = evaluate(args.checkpoint, args.data, progress=ProgressBar(), **options)
    if args.metadata is not None:
        _attach(run, args.metadata)
    for split, m in run.metrics["splits"].items():
        print(
            f"{split}: n={m['n']} accuracy={m['accuracy']:.4f} "
            f"balanced_accuracy={m['balanced_accuracy']:.4f} macro_f1={m['macro']['f1']:.4f}",
            file=sys.stderr,
        )
    print(run.path)
    return 0


def _attach(run, file: Path) -> None:  # noqa: ANN001 - a Run
    from core.engine import metadata
    from core.images.columns import root_paths

    info = metadata.attach(run, file, root_paths(run))
    m = info["match"]
    print(
        f"metadata: {len(info['columns'])} columns, {m['matched']:,} of {m['images']:,} images "
        "matched",
        file=sys.stderr,
    )
    for warning in info["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


def _find_run(text: str, runs_dir: Path | None):  # noqa: ANN202 - a Run
    from core.runs import RunStore

    folder = Path(text)
    store = RunStore(folder.parent) if folder.is_dir() else RunStore(runs_dir)
    run = store.get(folder.name if folder.is_dir() else text)
    if run is None:
        raise ClassLensError(
            f"no run {text!r} (in {store.root}). Pass a run folder as printed by "
            "'python -m core evaluate', or a run id listed by 'python -m core runs'."
        )
    return run


def _slices(args: argparse.Namespace) -> int:
    import json

    from core.engine import metadata
    from core.engine.progress import ProgressBar
    from core.images import checkup

    run = _find_run(args.run, args.runs_dir)
    if args.split not in run.splits:
        raise ClassLensError(
            f"run {run.run_id} has no split {args.split!r} (it has {', '.join(run.splits)}); "
            "pass --split with one of them."
        )
    if args.metadata is not None:
        _attach(run, args.metadata)
    search = checkup.weak_segments(
        run, args.split, measure=True, progress=ProgressBar(label="properties")
    )
    if (why := metadata.problem(run)) is not None:
        print(f"warning: the dataset's metadata file was not used: {why}", file=sys.stderr)
    if args.json:
        out = {
            "run": run.run_id,
            "split": search.split,
            "images": search.images,
            "tried": search.tried,
            "columns": list(search.columns),
            "segments": [s.to_dict() for s in search.segments],
        }
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(
        f"{search.tried:,} slices of {search.split} tried over {len(search.columns)} columns; "
        f"{len(search.segments)} significantly worse than the rest",
        file=sys.stderr,
    )
    for s in search.segments:
        print(s.sentence())
    return 0


def _robustness(args: argparse.Namespace) -> int:
    import json
    import math

    from core.analysis import robustness as analysis
    from core.engine import corruptions
    from core.engine.progress import ProgressBar
    from core.images import robustness
    from core.runs import RunStore

    run = _find_run(args.run, args.runs_dir)
    names = args.corruptions or tuple(corruptions.CORRUPTIONS)
    for name in names:
        corruptions.check(name, 0)
    top = max(corruptions.CORRUPTIONS.values())
    for severity in args.severities:
        if not 0 <= severity <= top:
            raise ClassLensError(
                f"severity {severity} is out of range: pass --severities as whole numbers from "
                f"0 to {top}, e.g. 1,2,3."
            )
    if args.sample is not None and args.sample < 1:
        raise ClassLensError(f"--sample must be at least 1, got {args.sample}; omit it for all.")
    store = RunStore(run.path.parent)
    n_images, seconds = robustness.estimate(
        run, args.split, args.sample, names, args.severities, seed=args.seed, store=store
    )
    print(
        f"{n_images:,} images to evaluate (about {seconds:,.0f} s at the run's own speed); "
        "stored results are reused",
        file=sys.stderr,
    )
    derived = []
    for name in names:
        levels = [s for s in sorted(set(args.severities)) if s <= corruptions.CORRUPTIONS[name]]
        if not levels:
            print(f"note: {name} has only severity 1; skipped", file=sys.stderr)
        for severity in levels:
            derived.append(
                robustness.corrupted_run(
                    store,
                    run,
                    args.split,
                    name,
                    severity,
                    sample=args.sample,
                    seed=args.seed,
                    progress=ProgressBar(label=f"{name} {severity}"),
                )  # fmt: skip
            )
    if not derived:
        raise ClassLensError(
            "nothing to evaluate: no corruption has the severities asked for; pass "
            "--severities with levels from 1 to 5 (hflip has only 1)."
        )
    frame = analysis.from_runs(run, derived)
    table = analysis.severity_table(frame)
    rce = analysis.relative_corruption_error(frame)
    mrce = analysis.mean_relative_corruption_error(frame)
    n = len(robustness.sample_paths(run, args.split, args.sample, args.seed))
    clean = float(table["clean_accuracy"].iloc[0]) if len(table) else float("nan")
    if args.json:
        out = {
            "run": run.run_id,
            "split": args.split,
            "images": n,
            "sample": args.sample,
            "seed": args.seed,
            "clean_accuracy": clean,
            "accuracy": table.to_dict(orient="records"),
            "relative_corruption_error": rce.to_dict(orient="records"),
            "mean_relative_corruption_error": mrce,
            "derived_runs": [r.run_id for r in derived],
        }
        print(json.dumps(out, indent=1, default=float))
        return 0
    levels = sorted(set(table["severity"].tolist()))
    print(f"run {run.run_id}, {args.split}: {n} images, clean accuracy {clean:.4f}")
    print(f"{'corruption':<16}" + "".join(f"{'s' + str(s):>8}" for s in levels) + f"{'RCE':>8}")
    acc = table.set_index(["corruption", "severity"])["accuracy"]
    score = rce.set_index("corruption")["rce"]
    for name in names:
        cells = "".join(
            f"{acc[(name, s)]:>8.4f}" if (name, s) in acc.index else f"{'-':>8}" for s in levels
        )
        tail = f"{score[name]:>+8.4f}" if name in score.index else f"{'-':>8}"
        print(f"{name:<16}{cells}{tail}")
    if not math.isnan(mrce):
        print(
            f"mean relative corruption error (mRCE) {mrce:+.4f}: on average over the corruptions "
            f"and severities above, the error is {100 * mrce:.1f} points "
            f"{'above' if mrce >= 0 else 'below'} the clean error on the same images"
        )
    return 0


def _runs(args: argparse.Namespace) -> int:
    from core.runs import RunStore

    store = RunStore(args.runs_dir)
    runs = store.list()
    if not runs:
        print(f"no runs in {store.root}", file=sys.stderr)
        return 0
    head = ("run", "checkpoint", "split", "n", "acc", "bal_acc", "macroF1")
    print("{:<17} {:<28} {:<6} {:>6} {:>7} {:>7} {:>7}".format(*head))
    for run in runs:
        for split, m in run.metrics["splits"].items():
            print(
                f"{run.run_id:<17} {run.meta['checkpoint']['name'][:28]:<28} {split:<6} "
                f"{m['n']:>6} {m['accuracy']:>7.4f} {m['balanced_accuracy']:>7.4f} "
                f"{m['macro']['f1']:>7.4f}"
            )
    return 0


def _archs(args: argparse.Namespace) -> int:
    from core.engine.archs import registry

    for arch in registry().values():
        print(f"{arch.name:<28} {arch.source}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Printable(sys.stdout), _Printable(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"evaluate": _evaluate, "runs": _runs, "archs": _archs, "slices": _slices,
                    "robustness": _robustness}  # fmt: skip
        return commands[args.command](args)
    except ClassLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; lower --batch-size.", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `python -m core runs | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # disk full, permissions on --runs-dir, ...
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, with a way to see the traceback
        if os.environ.get("CLASSLENS_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc}. Set CLASSLENS_DEBUG=1 to see the "
            "traceback and please report it.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
