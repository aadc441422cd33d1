"""Evaluate a trained recurrent agent from a checkpoint, without Ray (`rllib evaluate`).

    rllib evaluate ~/ray_results/my_exp --episodes 100 --gif episode.gif

The path may be an Algorithm checkpoint (``checkpoint_000009``), the RLModule folder inside
it, a Tune trial folder, an experiment folder (the newest checkpoint below it is used) or an
agent exported with `rllib export` (the module's files plus ``agent.json``, which names the
env it was trained on: a few MB, where the Algorithm checkpoint also holds the optimizer,
the env runners' states and the config).
The module is loaded with `RLModule.from_checkpoint`; episodes run one at a time, carrying
the recurrent state from step to step, with greedy actions unless ``explore=True``.
A module trained with the previous action and reward in its observations (the
``prev_action_reward`` option, or the action/reward reconstructions) gets them here as
RLlib's `PrevActionsPrevRewards` connector gave them in training (`module_observation`).
Success is ``info["success"]`` (or last-phase reward >= 9) of each episode's last step;
the 95% interval is Wilson's score interval.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
import torch

MODULE_SUBDIR = Path("learner_group") / "learner" / "rl_module" / "default_policy"
#: What `rllib export` writes next to the module's files: the env id and env_config.
AGENT_FILE = "agent.json"
#: Last-phase reward at or above this counts as success when the env gives no "success".
SUCCESS_THRESHOLD = 9.0


class CheckpointError(ValueError):
    """The path is not a checkpoint of a memory_agents recurrent RLModule."""


def find_module_checkpoint(path: str) -> Tuple[Path, Optional[Path]]:
    """Resolves `path` to (RLModule folder, Algorithm checkpoint folder or None)."""
    root = Path(path).expanduser().resolve()  # RLlib needs absolute paths (URIs)
    if not root.exists():
        raise CheckpointError(f"Checkpoint path {str(root)!r} does not exist")
    if (root / "class_and_ctor_args.pkl").is_file() and not (root / "learner_group").exists():
        algo_dir = root.parents[3] if len(root.parents) > 3 else None
        return root, algo_dir if algo_dir and (algo_dir / "learner_group").exists() else None
    if (root / MODULE_SUBDIR).is_dir():
        return root / MODULE_SUBDIR, root
    # A trial or experiment folder: the newest Algorithm checkpoint below it.
    candidates = [p.parents[4] for p in root.rglob(str(MODULE_SUBDIR / "class_and_ctor_args.pkl"))]
    candidates = [p for p in candidates if p != root]
    if not candidates:
        raise CheckpointError(
            f"No RLlib checkpoint found at or below {str(root)!r} (expected a "
            f"checkpoint_* folder with {MODULE_SUBDIR}/ inside)"
        )
    newest = max(candidates, key=lambda p: (p.stat().st_mtime, str(p)))
    return newest / MODULE_SUBDIR, newest


def load_module(module_dir: Path):
    """Loads our RLModule from its folder; a clear error if it is another kind of module."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from memory_agents.rllib.module import RecurrentCellModule

    try:
        module = RLModule.from_checkpoint(str(module_dir))
    except Exception as err:  # unpickling a foreign class, missing files, ...
        raise CheckpointError(f"Cannot load an RLModule from {str(module_dir)!r}: {err}") from err
    if not isinstance(module, RecurrentCellModule):
        raise CheckpointError(
            f"{str(module_dir)!r} holds a {type(module).__module__}.{type(module).__name__}, "
            f"not a memory_agents RecurrentCellModule; `rllib evaluate` runs our recurrent agents"
        )
    module.eval()
    return module


def env_from_checkpoint(algo_dir: Optional[Path], module_dir: Optional[Path] = None
                        ) -> Tuple[Optional[str], Dict[str, Any]]:
    """The env id and env_config the run trained on.

    An exported agent's ``agent.json`` (in `module_dir`) says it. Otherwise the Algorithm
    checkpoint: RLlib pickles the AlgorithmConfig (as a dict) into its
    ``class_and_ctor_args.pkl``; Tune's ``params.json`` next to it is the fallback.
    """
    if module_dir is not None and (module_dir / AGENT_FILE).is_file():
        try:
            agent = json.loads((module_dir / AGENT_FILE).read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{str(module_dir / AGENT_FILE)!r} is not valid JSON: {err}") from None
        env = agent.get("env")
        return (env if isinstance(env, str) else None), dict(agent.get("env_config") or {})
    if algo_dir is None:
        return None, {}
    config: Dict[str, Any] = {}
    ctor_file = algo_dir / "class_and_ctor_args.pkl"
    if ctor_file.is_file():
        import pickle

        with open(ctor_file, "rb") as f:
            args, _ = pickle.load(f)["ctor_args_and_kwargs"]
        config = args[0] if args and isinstance(args[0], dict) else {}
    if not isinstance(config.get("env"), str) and (algo_dir.parent / "params.json").is_file():
        config = json.loads((algo_dir.parent / "params.json").read_text())
    env = config.get("env")
    return (env if isinstance(env, str) else None), dict(config.get("env_config") or {})


def export_agent(checkpoint: str, out_dir: str, *, overwrite: bool = False) -> Path:
    """Copies the RLModule of `checkpoint` (any path `rllib evaluate` takes) to `out_dir`,
    with ``agent.json`` (env id, env_config, the module's config, where it came from), so
    that `rllib evaluate out_dir` runs it without the Algorithm checkpoint.

    The module's files are RLlib's own (`RLModule.from_checkpoint` loads them); the rest of
    an Algorithm checkpoint (optimizer state, env runners, connectors) is what resuming
    training needs and is left out.
    """
    import shutil

    module_dir, algo_dir = find_module_checkpoint(checkpoint)
    module = load_module(module_dir)  # fails here, not in a later evaluate, if it is no agent of ours
    env_id, env_config = env_from_checkpoint(algo_dir, module_dir)
    if env_id is None:
        raise CheckpointError(f"Cannot tell which env {checkpoint!r} was trained on; "
                              f"export an Algorithm checkpoint, trial or experiment folder")
    out = Path(out_dir).expanduser().resolve()
    if out == module_dir or out in module_dir.parents:
        raise ValueError(f"cannot export {str(module_dir)!r} into itself ({str(out)!r})")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{str(out)!r} exists; pass --force to replace it")
        shutil.rmtree(out)
    shutil.copytree(module_dir, out)
    model_config = module.model_config if isinstance(module.model_config, dict) else {}
    agent = {
        "env": env_id,
        "env_config": env_config,
        "module_class": f"{type(module).__module__}.{type(module).__name__}",
        "model_config": model_config,
        # The folder's name only: a full path would leak the machine's layout into the repo.
        "exported_from": (algo_dir or module_dir).name,
    }
    (out / AGENT_FILE).write_text(json.dumps(agent, indent=2, sort_keys=True, default=str) + "\n")
    return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sane at 0 and n successes)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EvaluationResult:
    episodes: int
    returns: List[float] = field(default_factory=list)
    last_phase_rewards: List[float] = field(default_factory=list)
    successes: List[int] = field(default_factory=list)
    frames: List[np.ndarray] = field(default_factory=list)
    #: One dict per recorded frame: step, phase, reward of the step that led to it, and
    #: (on the last frame) success.
    frame_info: List[Dict[str, Any]] = field(default_factory=list)
    #: Per episode (with `probe_states=True`): the recurrent state after the last
    #: observation before the final phase, flattened, and the phase-1 colour.
    probe_states: List[np.ndarray] = field(default_factory=list)
    probe_labels: List[str] = field(default_factory=list)
    probe: Optional[Any] = None  # a memory_agents.rllib.probe.ProbeResult
    #: Per episode, on Visual Match: the position (0 left, 1 centre, 2 right) of the square
    #: with the phase-1 colour, of the square touched (None: none) and the phase-3 step of
    #: the touch (None: none). They tell a colour-matching policy from a position policy.
    target_squares: List[int] = field(default_factory=list)
    touched_squares: List[Optional[int]] = field(default_factory=list)
    touch_steps: List[Optional[int]] = field(default_factory=list)

    @property
    def success_rate(self) -> Optional[float]:
        return float(np.mean(self.successes)) if self.successes else None

    def summary(self) -> str:
        lines = [f"episodes: {self.episodes}", f"mean return: {np.mean(self.returns):.3f}"]
        if self.last_phase_rewards:
            lines.append(f"mean last-phase reward: {np.mean(self.last_phase_rewards):.3f}")
        if self.successes:
            low, high = wilson_interval(int(np.sum(self.successes)), len(self.successes))
            lines.append(
                f"success rate: {self.success_rate:.3f} (95% CI {low:.3f}-{high:.3f}, "
                f"{int(np.sum(self.successes))}/{len(self.successes)})"
            )
        else:
            lines.append("success rate: n/a (the env reports no last_phase_reward/success)")
        if self.touched_squares:
            lines.append(self.behaviour_summary())
        if self.probe is not None:
            lines.append(self.probe.summary())
        return "\n".join(lines)

    def behaviour_summary(self) -> str:
        """Which square the agent touches in the final phase, and when; success per position
        of the target. A position policy touches one square whatever the target."""
        touched = self.touched_squares
        shares = [np.mean([t == i for t in touched]) for i in (0, 1, 2, None)]
        per_target = []
        for i in (0, 1, 2):
            hits = [t == i for target, t in zip(self.target_squares, touched) if target == i]
            per_target.append(f"{np.mean(hits):.2f} (n={len(hits)})" if hits else "n/a")
        steps = [s for s in self.touch_steps if s is not None]
        when = f"median touch at step {np.median(steps):g} of the phase" if steps else "no touch"
        return (f"final phase: touched left {shares[0]:.2f} / centre {shares[1]:.2f} / "
                f"right {shares[2]:.2f} / none {shares[3]:.2f}; "
                f"success when the target is left / centre / right: {' / '.join(per_target)}; {when}")


def _batch_state(state: Dict[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v))[None] for k, v in state.items()}


def module_observation(module, obs: Any, prev_action: Optional[Any], prev_reward: float):
    """`obs` as the module's (B=1, T=1) input: the env's observation or, for a module that
    takes the previous action and reward (a Dict observation space), the dict RLlib's
    `PrevActionsPrevRewards` connector builds (`prev_action` None at an episode's start)."""
    from memory_agents.rllib.module import prev_action_reward_observation

    if not isinstance(module.observation_space, gym.spaces.Dict):
        return torch.as_tensor(np.asarray(obs))[None, None]
    items = prev_action_reward_observation(obs, prev_action, prev_reward, module.action_space)
    return {key: torch.as_tensor(value)[None, None] for key, value in items.items()}


def run_episodes(
    module,
    env: gym.Env,
    episodes: int,
    *,
    seed: Optional[int] = 0,
    explore: bool = False,
    record_episode: Optional[int] = None,
    probe_states: bool = False,
) -> EvaluationResult:
    """Runs `episodes` episodes, carrying the recurrent state; records frames of one and,
    with `probe_states`, the state at the end of the delay (see `memory_agents.rllib.probe`)."""
    from ray.rllib.core.columns import Columns

    dist_cls = module.get_inference_action_dist_cls()
    result = EvaluationResult(episodes=episodes)
    rng = np.random.default_rng(seed)
    for episode in range(episodes):
        obs, info = env.reset(seed=None if seed is None else seed + episode)
        state = _batch_state(module.get_initial_state())
        record = episode == record_episode
        if record:
            result.frames.append(env.render())
            result.frame_info.append({"step": 0, "phase": info.get("phase"), "reward": 0.0})
        done, total, step = False, 0.0, 0
        prev_action, prev_reward = None, 0.0
        while not done:
            batch = {
                Columns.OBS: module_observation(module, obs, prev_action, prev_reward),  # (B=1, T=1, ...)
                Columns.STATE_IN: state,
            }
            with torch.no_grad():
                out = module.forward_inference(batch)
            logits = out[Columns.ACTION_DIST_INPUTS][:, 0]
            dist = dist_cls.from_logits(logits)
            if explore:
                torch.manual_seed(int(rng.integers(2**31)))
                action = dist.sample()
            else:
                action = dist.to_deterministic().sample()
            action = action[0].numpy()
            state = out[Columns.STATE_OUT]
            phase_before = info.get("phase")
            obs, reward, terminated, truncated, info = env.step(
                int(action) if isinstance(env.action_space, gym.spaces.Discrete) else action
            )
            prev_action, prev_reward = action, float(reward)
            total += float(reward)
            step += 1
            done = terminated or truncated
            if probe_states and phase_before in (1, 2) and info.get("phase") == 3:
                # `state` has just taken in the last observation before the final phase.
                result.probe_states.append(np.concatenate([state[k].numpy().ravel() for k in sorted(state)]))
                result.probe_labels.append(_phase_one_colour(env))
            if record:
                result.frames.append(env.render())
                result.frame_info.append({"step": step, "phase": info.get("phase"), "reward": float(reward),
                                          "success": info.get("success") if done else None})
        result.returns.append(total)
        if "last_phase_reward" in info:
            result.last_phase_rewards.append(float(info["last_phase_reward"]))
        if hasattr(type(env.unwrapped), "touched_square"):
            result.target_squares.append(int(env.unwrapped.target_square))
            result.touched_squares.append(env.unwrapped.touched_square)
            result.touch_steps.append(env.unwrapped.touch_step)
        if "success" in info:
            result.successes.append(int(bool(info["success"])))
        elif "last_phase_reward" in info:
            result.successes.append(int(float(info["last_phase_reward"]) >= SUCCESS_THRESHOLD))
    return result


def _check_probe_env(env: gym.Env) -> None:
    """The probe decodes Visual Match's phase-1 colour; other tasks have none."""
    if not hasattr(type(env.unwrapped), "target_colour"):
        raise CheckpointError(f"--probe needs a Visual Match env (a phase-1 colour to decode); "
                              f"{type(env.unwrapped).__name__} has none")


def _phase_one_colour(env: gym.Env) -> str:
    return str(env.unwrapped.target_colour)  # the env was checked before the first episode


def _upscale(frame: np.ndarray, min_side: int = 160) -> np.ndarray:
    factor = max(1, int(math.ceil(min_side / max(1, min(frame.shape[:2])))))
    return np.kron(frame, np.ones((factor, factor, 1), dtype=frame.dtype)) if factor > 1 else frame


def check_video_path(path: str) -> None:
    """Fails before any episode runs if `path`'s format cannot be written here.

    GIFs are written with Pillow (a dependency of matplotlib, so always installed); other
    formats (.mp4, ...) need imageio with its ffmpeg plugin.
    """
    if str(path).lower().endswith(".gif"):
        return
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise ValueError(f"writing {path!r} needs imageio and ffmpeg: pip install 'imageio[ffmpeg]' "
                         f"(or save a .gif, which needs nothing more)") from None


def save_gif(frames: List[np.ndarray], path: str, fps: int = 8) -> None:
    """GIF (Pillow) or, by extension, a video through imageio of the frames."""
    check_video_path(path)
    frames = [_upscale(np.asarray(f, dtype=np.uint8))[..., :3] for f in frames]
    if str(path).lower().endswith(".gif"):
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    else:
        import imageio.v2 as imageio

        imageio.mimsave(path, frames, fps=fps)


def strip_frames(frame_info: List[Dict[str, Any]], context: int = 3) -> List[int]:
    """Indices of the frames a strip shows: the first `context` frames of the episode (the
    cue), the last frame before the final phase, and every frame of the final phase."""
    if not frame_info:
        return []
    phases = [f.get("phase") for f in frame_info]
    last_phase = max((p for p in phases if p is not None), default=None)
    final = [i for i, p in enumerate(phases) if p == last_phase and last_phase is not None]
    if not final:
        return list(range(len(frame_info)))
    before = list(range(min(context, final[0])))
    if final[0] - 1 not in before and final[0] > 0:
        before.append(final[0] - 1)
    return before + final


def _caption(info: Dict[str, Any]) -> str:
    text = f"step {info['step']}, phase {info.get('phase', '?')}\nreward {info.get('reward', 0.0):+g}"
    if info.get("success") is not None:
        text += "\nSUCCESS" if info["success"] else "\nfailed"
    return text


def save_strip(frames: List[np.ndarray], path: str, frame_info: Optional[List[Dict[str, Any]]] = None,
               per_row: int = 10) -> None:
    """One PNG of captioned frames (step, phase, reward, success on the last): the episode's
    start, the last step before the final phase and every step of the final phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame_info = frame_info or [{"step": i} for i in range(len(frames))]
    idx = strip_frames(frame_info)
    rows = max(1, math.ceil(len(idx) / per_row))
    fig, axes = plt.subplots(rows, per_row, figsize=(1.45 * per_row, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        ax.imshow(np.asarray(frames[i], dtype=np.uint8)[..., :3], interpolation="nearest")
        ax.set_title(_caption(frame_info[i]), fontsize=6.5)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_checkpoint(
    checkpoint: str,
    *,
    episodes: int = 100,
    env: Optional[str] = None,
    env_config: Optional[Dict[str, Any]] = None,
    seed: Optional[int] = 0,
    explore: bool = False,
    gif: Optional[str] = None,
    png: Optional[str] = None,
    probe: bool = False,
) -> EvaluationResult:
    """Loads `checkpoint`, runs `episodes` episodes on its env (or `env`), saves media;
    with `probe`, also fits the memory probe (`result.probe`, memory_agents.rllib.probe)."""
    from memory_agents.rllib.config import check_env_id, make_env

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
    module_dir, algo_dir = find_module_checkpoint(checkpoint)
    module = load_module(module_dir)
    trained_env, trained_env_config = env_from_checkpoint(algo_dir, module_dir)
    env_id = env or trained_env
    if env_id is None:
        raise CheckpointError(
            f"Cannot tell which env {checkpoint!r} was trained on (no Algorithm checkpoint "
            f"or {AGENT_FILE} with it); pass --env"
        )
    if gif:
        check_video_path(gif)
    env_id = check_env_id(env_id)
    kwargs = {**trained_env_config, **(env_config or {})}
    render = gif is not None or png is not None
    instance = make_env(env_id, kwargs, render_mode="rgb_array" if render else None)
    expected = getattr(module, "env_observation_space", module.observation_space)
    if instance.observation_space.shape != expected.shape:
        raise CheckpointError(
            f"The checkpoint's module expects observations {expected}, "
            f"but {env_id} gives {instance.observation_space}"
        )
    if probe:
        _check_probe_env(instance)  # before any episode runs
        if episodes < 4:
            raise ValueError(f"--probe needs at least 4 episodes (half to fit, half to score), got {episodes}")
    try:
        result = run_episodes(
            module, instance, episodes, seed=seed, explore=explore,
            record_episode=0 if render else None, probe_states=probe,
        )
    finally:
        instance.close()
    if probe:
        from memory_agents.rllib.probe import fit_linear_probe

        result.probe = fit_linear_probe(np.stack(result.probe_states), result.probe_labels)
    if gif:
        save_gif(result.frames, gif)
    if png:
        save_strip(result.frames, png, result.frame_info)
    return result
