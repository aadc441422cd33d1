"""Episode metrics of the memory tasks, logged by RLlib env runners.

The Visual Match / Key-to-Door envs put ``info["last_phase_reward"]`` (10 = right colour)
and ``info["success"]`` (0/1) into the info of an episode's last step. This callback
copies them into RLlib's metrics, so they show up in ``result["env_runners"]`` (training)
and ``result["evaluation"]["env_runners"]`` (evaluation), in TensorBoard and progress.csv
as ``env_runners/last_phase_reward`` and ``env_runners/success``.
"""

from __future__ import annotations

from ray.rllib.callbacks.callbacks import RLlibCallback

#: Info keys copied into metrics (the same names in results, TensorBoard and CSVs).
EPISODE_INFO_METRICS = ("last_phase_reward", "success")


class MemoryTaskMetrics(RLlibCallback):
    """Logs the last-step info values of `EPISODE_INFO_METRICS`, averaged like returns."""

    def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, **kwargs):
        if metrics_logger is None:
            return
        infos = episode.get_infos(-1) if len(episode) > 0 else {}
        window = getattr(getattr(env_runner, "config", None), "metrics_num_episodes_for_smoothing", 100)
        for key in EPISODE_INFO_METRICS:
            if isinstance(infos, dict) and key in infos:
                metrics_logger.log_value(key, float(infos[key]), reduce="mean", window=window)
