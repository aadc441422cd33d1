"""``python -m supervised <task> --cell ur-lstm [options]`` (console script ``memory-agents-supervised``).

Precedence of settings: TrainConfig defaults < task defaults < ``--config FILE.yaml`` < flags
given on the command line. User errors print one ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from supervised.config import CONFIG_FIELDS, TASK_DEFAULTS, TASKS, ConfigError, TrainConfig
from supervised.readers import DataError

TASK_HELP = {
    "copy": "copy task: remember 10 symbols over N blanks (no files)",
    "adding": "adding task: sum of two marked values in a length-T sequence (no files)",
    "smnist": "sequential MNIST, 784 steps; --data-dir with train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), "
              "t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz) (Fashion-MNIST files work too)",
    "pmnist": "permuted MNIST: sMNIST under one fixed pixel permutation from --permutation-seed",
    "scifar": "sequential CIFAR-10, 1024 steps x 3 channels; --data-dir containing cifar-10-batches-py/",
    "wikitext103": "word-level LM; --data-dir with wiki.{train,valid,test}.tokens (or Penn Treebank ptb.{train,valid,test}.txt)",
    "digits": "sklearn's 8x8 digits as 64-step sequences (no files; needs scikit-learn)",
}

# Fields given positionally (the task) rather than as --flags.
HIDDEN_FIELDS = {"task"}


def _value_type(hint: Any) -> type:
    """``int | None`` -> ``int``: the type argparse converts a flag's text to."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if isinstance(hint, types.UnionType) and args else hint


def build_parser() -> argparse.ArgumentParser:
    from supervised.model import available_cells

    cells = available_cells()
    task_lines = "\n".join(
        f"  {name:<12} {TASK_HELP[name]}\n  {'':<12} defaults: "
        + ", ".join(f"{k}={v}" for k, v in TASK_DEFAULTS[name].items()) for name in TASKS)
    epilog = (f"tasks:\n{task_lines}\n\ncells:\n  {', '.join(cells) if cells else '(memory_agents.cells is not importable)'}\n\n"
              "examples:\n  python -m supervised adding --cell ur-lstm --steps 2000 --out runs/adding-ur\n"
              "  python -m supervised --config configs/supervised/copy.yaml --cell lstm\n"
              "  python -m supervised adding --out runs/adding-ur --resume")
    parser = argparse.ArgumentParser(
        prog="python -m supervised", description="Train a gated RNN on one of the paper's supervised experiments.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", nargs="?", choices=TASKS, metavar="TASK",
                        help=f"one of: {', '.join(TASKS)} (may come from --config instead)")
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of options (configs/supervised/*.yaml); flags override it")
    hints = typing.get_type_hints(TrainConfig)
    for name, f in CONFIG_FIELDS.items():
        if name in HIDDEN_FIELDS:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f.metadata["help"]
        if "default" not in help_text:
            help_text += f" (default: {'task default' if f.default is None else f.default})"
        kind = _value_type(hints[name])
        if kind is bool and name == "resume":
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_text)
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            metavar = {int: "N", float: "X", str: "S"}.get(kind, "V")
            metavar = {"cell": "NAME", "data_dir": "DIR", "out": "DIR"}.get(name, metavar)
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=metavar, help=help_text)
    return parser


def load_yaml_config(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read --config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} must be a mapping of option names to values")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    check_values(values, f"--config {path}")
    return values


def check_values(values: dict[str, Any], where: str) -> None:
    """Option names and value types of a mapping from a file (argparse checks the flags' types)."""
    unknown = sorted(set(values) - set(CONFIG_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(TrainConfig)
    for name, value in values.items():
        kind = _value_type(hints[name])
        if value is None or isinstance(value, kind) or (kind is float and isinstance(value, int)):
            continue
        raise ConfigError(f"option {name} must be {kind.__name__}, got {value!r}")


def config_from_args(argv: list[str]) -> TrainConfig:
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    config_path = args.pop("config", None)
    if config_path:
        values.update(load_yaml_config(config_path))
    task = args.pop("task", None)
    values.update(args)
    if task is not None:
        values["task"] = task
    if "task" not in values:
        raise ConfigError(f"name a task ({', '.join(TASKS)}) or pass --config FILE.yaml")
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = config_from_args(argv)
        from supervised.train import train

        results = train(cfg)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: continue with the same command plus --resume", file=sys.stderr)
        sys.exit(130)
    summary = {k: results[k] for k in ("task", "cell", "seed", "steps", "val", "test")}
    if "baseline_loss" in results:
        summary["baseline_loss"] = results["baseline_loss"]
    print(json.dumps(summary))
    print(f"run directory: {Path(results['config']['out']).resolve()}")


if __name__ == "__main__":
    main()
