"""The `panm` command line: a thin layer over library calls.

Every subcommand parses its flags, calls one library function and prints the result. Bad input
or a failed write (a full disk, an unwritable folder, a run directory in use) ends with a
one-line `panm: error: ...` message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from panm.checkpoint import CheckpointError, load_checkpoint_model, resolve_checkpoint
from panm.data import format_jsonl, generate_examples, read_jsonl, write_jsonl
from panm.evaluation import TEST_SETS, evaluate_lengths, predict, seed_of_test_set
from panm.memory.panm import EVAL_BASES
from panm.models.registry import MODEL_NAMES
from panm.pretrained import atomic_write
from panm.recipes import default_train_config
from panm.tasks import TASK_NAMES, Task, get_task
from panm.training import COMPILE_MODES, RUN_CONFIG, TrainConfig, read_run_config, train


class UsageError(Exception):
    """Bad command-line input."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        set_threads(args)
        return args.run(args)
    # OSError: a full disk, an unwritable --out, ...; ImportError: an optional extra is missing
    except (UsageError, ValueError, OSError, CheckpointError, ImportError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"panm: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("panm: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panm", description="Pointer-Augmented Neural Memory: train and measure extrapolation."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="write task examples as JSON lines")
    data.add_argument("--task", required=True, help=f"one of: {', '.join(TASK_NAMES)}")
    data.add_argument("--length", type=int, help="main-sequence length of every example")
    data.add_argument("--count", type=int, default=100)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--split", help="SCAN split (length, cutoff-26, ...): writes a folder")
    data.add_argument("--out", help="output file (SCAN: folder); standard output if omitted")
    data.set_defaults(run=run_data)

    tr = commands.add_parser("train", help="train a model on a task")
    tr.add_argument("--task", help=f"one of: {', '.join(TASK_NAMES)}")
    tr.add_argument("--model", default="panm", help=f"one of: {', '.join(MODEL_NAMES)}")
    tr.add_argument("--out", required=True, help="run directory")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--steps", type=int)
    tr.add_argument("--minutes", type=float, help="wall-clock training budget")
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--train-lengths", help="MIN,MAX main-sequence lengths (default 1,10)")
    tr.add_argument(
        "--length-warmup",
        metavar="FIRST_MAX,STEPS",
        help="train first on lengths up to FIRST_MAX, growing linearly to the longest training "
        "length by step STEPS (default: every length from the start)",
    )
    tr.add_argument("--eval-every", type=int)
    tr.add_argument("--valid-count", type=int)
    tr.add_argument(
        "--train-examples", type=int, help="train on a fixed set of N examples (default: fresh)"
    )
    tr.add_argument("--split", help="SCAN split: length, cutoff-22 ... cutoff-40")
    tr.add_argument("--data-file", help="SCAN: train on this file (official format)")
    tr.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task setting, e.g. --task-option close_ids=0.5 for id_sort (VALUE is JSON)",
    )
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model setting, e.g. --set panm.decoy_slots=8 (VALUE is JSON or a string)",
    )
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_compile_flag(tr, "torch.compile the model")
    tr.add_argument(
        "--pad-multiple",
        type=int,
        metavar="N",
        help="pad training batches' lengths up to a multiple of N, so that --compile meets few "
        "shapes (default 1: no padding; a resumed run keeps its own)",
    )
    tr.add_argument(
        "--skip-gradient-spikes",
        type=float,
        metavar="FACTOR",
        help="skip the update of a step whose gradient norm is above FACTOR times the median "
        "of the last 100 steps' (default: the recipe's, off for most; 0: off; a resumed run "
        "keeps its own)",
    )
    tr.add_argument(
        "--valid-base",
        choices=EVAL_BASES,
        help="the base addresses a PANM model validates at: zero, random (a fixed uniform draw "
        "per example) or carry (per example, a fixed one that puts a carry into a random "
        "address bit inside it), so that the checkpoint chosen must carry across high address "
        "bits; default: the recipe's, zero for most; a resumed run keeps its own",
    )
    tr.add_argument(
        "--adam-beta2",
        type=float,
        metavar="B",
        help="Adam's second-moment decay (default: the recipe's, 0.999 for most; a resumed run "
        "keeps its own)",
    )
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_flags(tr)
    tr.set_defaults(run=run_train)

    ev = commands.add_parser("eval", help="accuracy per test length")
    ev.add_argument("--checkpoint", required=True, help="run directory or model folder")
    ev.add_argument("--lengths", help="comma-separated test lengths (default: the task's)")
    ev.add_argument("--count", type=int, default=500, help="examples per length")
    ev.add_argument(
        "--test-set",
        choices=tuple(TEST_SETS),
        default="dev",
        help="dev (default): for exploring and choosing; final: only for published results",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the model's random draws")
    ev.add_argument("--which", choices=("best", "latest"), default="best")
    ev.add_argument("--task", help="task, when the checkpoint is not inside a run directory")
    ev.add_argument("--out", help="JSON results file (default: CHECKPOINT/eval.json)")
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting the weights do not depend on, e.g. --set panm.eval_base=random",
    )
    add_device_flags(ev)
    ev.set_defaults(run=run_eval)

    pr = commands.add_parser("predict", help="run a model on JSON-line examples")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--in", dest="input", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--which", choices=("best", "latest"), default="best")
    pr.add_argument("--task", help="task, when the checkpoint is not inside a run directory")
    add_device_flags(pr)
    pr.set_defaults(run=run_predict)

    be = commands.add_parser("bench", help="tasks x models x seeds: tables and plots")
    be.add_argument("config", nargs="?", help="bench config JSON (see configs/)")
    be.add_argument(
        "--quick",
        action="store_true",
        help="the README's table (configs/quick.json): 8 runs, PANM 10,000 steps, the LSTM and "
        "attention 5,000, the Transformer 2,000; final test set",
    )
    be.add_argument("--out", help="results folder (default: bench_out/quick or bench_out/NAME)")
    be.add_argument("--jobs", type=int, help="runs at once (default: one per CPU core)")
    be.add_argument("--device", help="device of every run, e.g. cuda (default: the config's)")
    be.add_argument(
        "--test-set",
        choices=tuple(TEST_SETS),
        help="dev or final (default: the config's test_set; dev if it names none; --quick: final)",
    )
    be.add_argument("--no-progress", action="store_true")
    be.set_defaults(run=run_bench)

    rp = commands.add_parser(
        "report", help="tables from raw results: a bench folder's report, published tables"
    )
    rp.add_argument(
        "folder", nargs="?", help="bench folder: rewrite its report from its runs' result.json"
    )
    rp.add_argument(
        "--publish",
        metavar="DIR",
        help="copy FOLDER's raw results (no checkpoints) to DIR/runs and write the report there",
    )
    rp.add_argument(
        "--tables",
        nargs="+",
        metavar="MARKDOWN",
        help="regenerate the panm-table blocks of these Markdown files from their results",
    )
    rp.add_argument(
        "--check",
        metavar="ROOT",
        help="change nothing; list every published table under ROOT (README.md, docs/) that "
        "differs from its raw results, exit 1 if any",
    )
    rp.set_defaults(run=run_report)

    sp = commands.add_parser("bench-speed", help="training/evaluation throughput, PANM vs baseline")
    sp.add_argument("--out", help="JSON results file (default: bench_out/speed.json)")
    sp.add_argument("--quick", action="store_true", help="fewer repeats")
    sp.add_argument("--device", default="cpu")
    sp.add_argument(
        "--authors-code",
        metavar="DIR",
        help="time the authors' PANM from DIR (a checkout of thaihungle/PANM) beside ours",
    )
    add_compile_flag(sp, "also time torch.compile'd panm and attention (compiling takes minutes)")
    sp.set_defaults(run=run_speed)

    vz = commands.add_parser("viz", help="draw PANM's pointer attention for one example (PNG)")
    vz.add_argument("--checkpoint", required=True)
    vz.add_argument("--length", type=int, required=True)
    vz.add_argument("--task", help="task, when the checkpoint is not inside a run directory")
    vz.add_argument("--which", choices=("best", "latest"), default="best")
    vz.add_argument("--seed", type=int, default=0)
    vz.add_argument("--out", help="PNG file (default: CHECKPOINT/pointers-LENGTH.png)")
    vz.set_defaults(run=run_viz)
    return parser


def add_compile_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=COMPILE_MODES,
        metavar="MODE",
        help=f"{what}; MODE: default, or reduce-overhead (CUDA graphs on a GPU)",
    )


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default 1: small recurrent models run fastest single-threaded)",
    )


def set_threads(args: argparse.Namespace) -> None:
    if not hasattr(args, "threads"):
        return
    threads = args.threads or 1
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    if args.threads is None and args.device == "cpu":
        print("panm: using 1 CPU thread (--threads N to change)", file=sys.stderr)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device is available")


def parse_lengths(text: str, flag: str) -> list[int]:
    try:
        lengths = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not lengths or min(lengths) < 1:
        raise UsageError(f"{flag} must list positive integers, got {text!r}")
    return lengths


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {}
    if getattr(args, "split", None):
        options["split"] = args.split
    if getattr(args, "data_file", None):
        options["data_file"] = args.data_file
    if options and args.task != "scan":
        raise UsageError("--split and --data-file are SCAN options (--task scan)")
    return {**options, **parse_settings(getattr(args, "task_option", []))}


def run_data(args: argparse.Namespace) -> int:
    if args.task == "scan":
        from panm.tasks.scan import make_split, write_split

        if not args.split or not args.out:
            raise UsageError("--task scan needs --split S and --out DIR")
        write_split(make_split(args.split), Path(args.out))
        print(f"wrote SCAN split {args.split} to {args.out}", file=sys.stderr)
        return 0
    task = get_task(args.task)
    if args.length is None:
        raise UsageError("--length is required")
    examples = generate_examples(task, args.length, args.count, args.seed)
    if args.out:
        write_jsonl(args.out, examples)
    else:
        sys.stdout.write(format_jsonl(examples))
    return 0


def run_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.resume:
        try:
            config = read_run_config(out)
        except FileNotFoundError as error:
            raise UsageError(f"cannot resume: {error}") from None
        config = _apply_flags(config, args, only=("steps", "minutes"))
    else:
        if not args.task:
            raise UsageError("--task is required")
        get_task(args.task, **task_options(args))  # fails early on a bad task
        config = default_train_config(args.task, args.model)
        config = _apply_flags(config, args)
    result = train(config, out, resume=args.resume, progress=not args.no_progress)
    if result.rank != 0:
        return 0
    best = result.best_valid or {}
    print(
        f"trained {result.step} steps in {result.elapsed_seconds:.0f}s; best validation "
        f"(training lengths) sequence accuracy {best.get('valid_sequence_accuracy', 0.0):.3f} "
        f"at step {result.best_step}; run in {out}"
    )
    return 0


def _apply_flags(
    config: TrainConfig, args: argparse.Namespace, only: tuple[str, ...] | None = None
) -> TrainConfig:
    flags: dict[str, Any] = {
        "seed": args.seed,
        "steps": args.steps,
        "minutes": args.minutes,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "eval_every": args.eval_every,
        "valid_count": args.valid_count,
        "train_examples": args.train_examples,
        "device": args.device if args.device != "cpu" else None,
        "compile": args.compile,
        "pad_multiple": args.pad_multiple,
        "skip_gradient_spikes": args.skip_gradient_spikes,
        "valid_base": args.valid_base,
        "adam_beta2": args.adam_beta2,
    }
    if args.train_lengths:
        low_high = parse_lengths(args.train_lengths, "--train-lengths")
        if len(low_high) != 2:
            raise UsageError("--train-lengths expects MIN,MAX")
        flags["train_lengths"] = tuple(low_high)
    if args.length_warmup:
        first_steps = parse_lengths(args.length_warmup, "--length-warmup")
        if len(first_steps) != 2:
            raise UsageError("--length-warmup expects FIRST_MAX,STEPS")
        flags["length_warmup"] = tuple(first_steps)
    changes = {k: v for k, v in flags.items() if v is not None and (only is None or k in only)}
    if changes.get("skip_gradient_spikes") == 0:
        changes["skip_gradient_spikes"] = None  # 0 turns a recipe's guard off
    if only is None:
        changes["task_options"] = {**config.task_options, **task_options(args)}
        changes["model_overrides"] = {**config.model_overrides, **parse_settings(args.set)}
    return dataclasses.replace(config, **changes)


def checkpoint_task(args: argparse.Namespace) -> Task:
    """The task a checkpoint was trained on (from its run.json), or --task."""
    folder = resolve_checkpoint(args.checkpoint, args.which)
    for candidate in (Path(args.checkpoint), folder.parent.parent):
        if (candidate / RUN_CONFIG).is_file():
            run = read_run_config(candidate)
            if args.task and args.task != run.task:
                raise UsageError(f"the checkpoint was trained on {run.task}, not {args.task}")
            return get_task(run.task, **run.task_options)
    if not args.task:
        raise UsageError(f"{args.checkpoint} is not inside a run directory: give --task")
    return get_task(args.task)


def run_eval(args: argparse.Namespace) -> int:
    task = checkpoint_task(args)
    settings = parse_settings(args.set)
    model = load_checkpoint_model(args.checkpoint, args.which, args.device, settings)
    torch.manual_seed(args.seed)  # any random draw of the model's (e.g. panm.eval_base=random)
    lengths = (
        parse_lengths(args.lengths, "--lengths")
        if args.lengths
        else list(task.default_test_lengths)
    )
    results = evaluate_lengths(model, task, lengths, args.count, args.test_set, device=args.device)
    oracle = task.eos_id is not None  # data-set tasks with EOS: also the oracle-length score
    print(
        f"{'length':>8} {'sequence acc':>13} {'token acc':>10} {'examples':>9}"
        + (f" {'oracle-length acc':>18}" if oracle else "")
    )
    for length, acc in results.items():
        print(
            f"{length:>8} {acc.sequence_accuracy:>13.4f} {acc.token_accuracy:>10.4f} {acc.count:>9}"
            + (f" {acc.oracle_sequence_accuracy:>18.4f}" if oracle else "")
        )
    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval.json"
    payload = {
        "checkpoint": str(resolve_checkpoint(args.checkpoint, args.which)),
        "task": task.name,
        "test_set": {"name": args.test_set, "seed": seed_of_test_set(args.test_set)},
        "seed": args.seed,
        "settings": settings,
        "results": {str(k): v.as_dict() for k, v in results.items()},
    }
    atomic_write(out, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n"))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    task = checkpoint_task(args)
    model = load_checkpoint_model(args.checkpoint, args.which, args.device)
    examples = read_jsonl(args.input, task)
    outputs = predict(model, task, examples, device=args.device)
    write_jsonl(args.out, [{**e, "output": o} for e, o in zip(examples, outputs, strict=True)])
    print(f"wrote {len(outputs)} predictions to {args.out}", file=sys.stderr)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from panm.bench import bench_main

    name = "quick" if args.quick else Path(args.config or "bench").stem
    out = args.out or str(Path("bench_out") / name)
    return bench_main(
        args.config,
        args.quick,
        out,
        args.jobs,
        not args.no_progress,
        args.device,
        args.test_set,
    )


def run_report(args: argparse.Namespace) -> int:
    from panm.report import report_main

    if args.publish and not args.folder:
        raise UsageError("--publish DIR needs the bench FOLDER to copy from")
    if not (args.folder or args.tables or args.check):
        raise UsageError("give a bench FOLDER, --tables MARKDOWN... or --check ROOT")
    return report_main(args.folder, args.publish, args.tables or [], args.check)


def run_speed(args: argparse.Namespace) -> int:
    from panm.speed import speed_main

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device is available")
    out = args.out or str(Path("bench_out") / "speed.json")
    return speed_main(out, args.quick, args.device, args.authors_code, args.compile)


def run_viz(args: argparse.Namespace) -> int:
    from panm.viz import draw_pointer_walk

    task = checkpoint_task(args)
    model = load_checkpoint_model(args.checkpoint, args.which)
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"pointers-{args.length}.png"
    print(f"wrote {draw_pointer_walk(model, task, args.length, out, args.seed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
