"""The `rllib` command line (Ray removed its own after 2.40): train through Tune, evaluate.

Train from a config file (defines `config`, optionally `stop`; a --stop given here wins),
by path or by the name of a config shipped with the package::

    rllib train file ppo_passive_match_ur_lstm
    rllib train file configs/ppo_passive_match_ur_lstm.py --resume   # continue after Ctrl-C
    MEMORY_AGENTS_CELL=lstm MEMORY_AGENTS_DELAY=60 MEMORY_AGENTS_SEED=1 \\
        rllib train file configs/ppo_passive_match_ur_lstm.py --stop '{"num_env_steps_sampled_lifetime": 2e6}'

Train from flags (our recurrent module; `--config` is AlgorithmConfig settings as JSON,
with `model_config` merged into the module's)::

    rllib train --algo PPO --env memory_agents/PassiveVisualMatch-Delay30-v0 \\
        --config '{"lr": 3e-4, "model_config": {"cell": "ur-gru"}}' --stop '{"training_iteration": 100}'

Evaluate (no Ray needed)::

    rllib evaluate ~/ray_results/<experiment> --episodes 100 --gif episode.gif

Export the trained module alone (a few MB), which `rllib evaluate` then takes::

    rllib export ~/ray_results/<experiment> agents/ur-lstm-s0

Common options: --resume, --storage-path, --experiment-name, --checkpoint-freq,
--checkpoint-every-s, --keep-checkpoints, --num-samples, --torch-threads, -v 0/1/2,
--ray-address (run on an existing Ray cluster).
`python -m memory_agents.cli` is the same program.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional


def _json_dict(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from memory_agents.rllib import defaults

    parser = argparse.ArgumentParser(
        prog="rllib",
        description="Train (through Ray Tune) and evaluate recurrent RLlib agents of memory-agents.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train with Ray Tune: `rllib train file CONFIG` or `rllib train --algo --env`",
        description="Train with ray.tune.Tuner. Either `rllib train file CONFIG` (a path, or the "
        "name of a shipped config such as ppo_passive_match_ur_lstm; the file defines `config` "
        "and optionally `stop`) or `rllib train --algo PPO --env ID`. Checkpoints are saved "
        "every --checkpoint-freq iterations, at least every --checkpoint-every-s seconds, and "
        "on Ctrl-C/SIGTERM; the same command with --resume continues the run.",
    )
    train.add_argument("target", nargs="*", metavar="file CONFIG",
                       help="`file` followed by a config file's path or a shipped config's name")
    train.add_argument("--algo", default=None, help="PPO (default), APPO or IMPALA; flag mode only")
    train.add_argument("--env", help="env id, e.g. memory_agents/PassiveVisualMatch-v0; flag mode only")
    train.add_argument("--config", type=_json_dict, default=None,
                       help='AlgorithmConfig settings as JSON, e.g. \'{"lr": 1e-4, '
                       '"model_config": {"cell": "gru"}}\' (applied after the file; unknown keys are an error)')
    train.add_argument("--stop", type=_json_dict, default=None,
                       help='Tune stop criteria as JSON, e.g. \'{"training_iteration": 10}\' '
                       f'(default: the file\'s `stop`; flag mode: {defaults.TIMESTEPS:,} env steps)')
    train.add_argument("--resume", action="store_true",
                       help="continue the newest interrupted run of this config (or --experiment-name) "
                       "from its last checkpoint, to its stop, keeping its results")
    train.add_argument("--storage-path", default=defaults.STORAGE_PATH, help="where results go (default %(default)s)")
    train.add_argument("--experiment-name", default=None,
                       help="folder under the storage path (default: the config's name and the start time)")
    train.add_argument("--checkpoint-freq", type=int, default=defaults.CHECKPOINT_FREQ,
                       help="checkpoint every N iterations (default %(default)s; 0: only by time and at the end)")
    train.add_argument("--checkpoint-every-s", type=float, default=defaults.CHECKPOINT_EVERY_S,
                       help="and at least every this many seconds (default %(default)s)")
    train.add_argument("--keep-checkpoints", type=_positive_int, default=defaults.KEEP_CHECKPOINTS,
                       help="checkpoints kept per trial, the newest (default %(default)s)")
    train.add_argument("--checkpoint-at-end", action=argparse.BooleanOptionalAction, default=True,
                       help="save a checkpoint when a trial stops (default: yes)")
    train.add_argument("--num-samples", type=_positive_int, default=1, help="trials (repeats) of the config")
    train.add_argument("--torch-threads", type=_positive_int, default=defaults.TORCH_THREADS,
                       help="torch threads per process (default %(default)s: best on a small machine)")
    train.add_argument("--ray-address", default=None,
                       help="address of an existing Ray cluster (default: start Ray locally)")
    train.add_argument("-v", "--verbose", type=int, default=1, choices=(0, 1, 2),
                       help="0: errors and the summary; 1 (default): one progress line per iteration; "
                       "2: also Tune's tables and Ray's logs")

    evaluate = commands.add_parser(
        "evaluate", help="run episodes with a checkpoint and print the success rate",
        description="Load a checkpoint's RLModule (no Ray needed), run episodes carrying the "
        "recurrent state, print success rate with a 95% interval.",
    )
    evaluate.add_argument("checkpoint", help="checkpoint, trial or experiment folder")
    evaluate.add_argument("--episodes", type=_positive_int, default=100)
    evaluate.add_argument("--env", default=None, help="env id (default: the one trained on)")
    evaluate.add_argument("--env-config", type=_json_dict, default=None,
                          help='env kwargs as JSON, e.g. \'{"distractor_steps": 60}\'')
    evaluate.add_argument("--seed", type=int, default=0, help="episode i is reset with seed+i")
    evaluate.add_argument("--explore", action="store_true", help="sample actions (default: greedy)")
    evaluate.add_argument("--gif", default=None, help="save episode 0 as a GIF (.mp4 needs imageio[ffmpeg])")
    evaluate.add_argument("--png", default=None,
                          help="save episode 0 as a PNG: every step of its last phase, captioned")
    evaluate.add_argument("--probe", action="store_true",
                          help="memory probe (Visual Match): how well a linear read-out decodes the "
                          "phase-1 colour from the recurrent state at the end of the delay")
    export = commands.add_parser(
        "export", help="copy a checkpoint's trained module, with the env it needs, to a folder",
        description="Copy the RLModule of a checkpoint (any path `rllib evaluate` takes) to OUT, "
        "with agent.json naming the env and env_config it was trained on, so that `rllib "
        "evaluate OUT` runs it. A few MB: the optimizer and env-runner states that resuming "
        "needs stay behind.",
    )
    export.add_argument("checkpoint", help="checkpoint, trial or experiment folder")
    export.add_argument("out", help="folder to create")
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")
    return parser


def _export(args: argparse.Namespace) -> int:
    from memory_agents.ray_init import quiet_process
    from memory_agents.rllib.evaluate import export_agent

    quiet_process()
    out = export_agent(args.checkpoint, args.out, overwrite=args.force)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"exported to {out} ({size / 1e6:.1f} MB); run it with: rllib evaluate {args.out}")
    return 0


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from memory_agents.rllib import defaults
    from memory_agents.rllib import train as training

    if args.verbose < 2:
        from memory_agents.ray_init import quiet_process

        quiet_process()  # before the config is built: RLlib warns while building it
    if args.target:
        if args.target[0] != "file" or len(args.target) != 2:
            parser.error("use `rllib train file CONFIG` or `rllib train --algo ALGO --env ID`")
        if args.algo is not None or args.env is not None:
            parser.error("--algo/--env apply to flag mode only; in file mode the config file "
                         "sets them (change its settings with --config)")
        config, file_stop, path = training.load_config_file(args.target[1])
        stop = args.stop if args.stop is not None else file_stop
        prefix = path.stem
    else:
        if not args.env:
            parser.error("--env is required without `file CONFIG`")
        from memory_agents.rllib.config import memory_agent_config

        overrides = dict(args.config or {})
        model_config = dict(overrides.pop("model_config", None) or {})
        algo = (args.algo or "PPO").upper()
        config = memory_agent_config(
            args.env, algo=algo,
            cell=model_config.pop("cell", "ur-lstm"),
            hidden_size=model_config.pop("hidden_size", defaults.HIDDEN_SIZE),
            env_config=overrides.pop("env_config", None),
            model_config=model_config,
        )
        args.config = overrides
        stop = args.stop if args.stop is not None else {defaults.STOP_KEY: defaults.TIMESTEPS}
        prefix = f"{algo}_{args.env.rpartition('/')[2]}"
    training.apply_overrides(config, args.config)
    training.validate_config(config)
    label = training.config_label(config)
    if args.verbose >= 1:
        print(f"rllib train: {config.algo_class.__name__} on {config.env}"
              f"{', cell ' + label if label else ''}, stop {stop}", flush=True)
    results = training.run_tune(
        config,
        stop=stop,
        storage_path=args.storage_path,
        experiment_name=args.experiment_name,
        name_prefix=prefix,
        num_samples=args.num_samples,
        checkpoint_freq=args.checkpoint_freq,
        checkpoint_every_s=args.checkpoint_every_s,
        keep_checkpoints=args.keep_checkpoints,
        checkpoint_at_end=args.checkpoint_at_end,
        ray_address=args.ray_address,
        resume=args.resume,
        torch_threads=args.torch_threads,
        label=label,
        verbose=args.verbose,
    )
    lines, errors = training.summarize(results)
    print("\n".join(lines), flush=True)
    from memory_agents.rllib.progress import interrupted

    if interrupted():
        print("interrupted: run the same command with --resume to continue from the checkpoint",
              flush=True)
        return 130
    return 1 if errors else 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from memory_agents.ray_init import quiet_process
    from memory_agents.rllib.evaluate import check_video_path, evaluate_checkpoint

    torch.set_num_threads(1)
    quiet_process()  # RLlib's deprecation warnings while it loads the module
    if args.gif:
        check_video_path(args.gif)  # before any episode runs
    result = evaluate_checkpoint(
        args.checkpoint, episodes=args.episodes, env=args.env, env_config=args.env_config,
        seed=args.seed, explore=args.explore, gif=args.gif, png=args.png, probe=args.probe,
    )
    print(result.summary())
    for path in (args.gif, args.png):
        if path:
            print(f"saved {path}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args, parser)
        if args.command == "export":
            return _export(args)
        return _evaluate(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        # Unknown cell, unregistered env, bad checkpoint: one clear line, no traceback.
        print(f"rllib {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
