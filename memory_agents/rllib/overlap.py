"""PPO whose remote env runners sample the next batch while the learner trains on this one.

RLlib's PPO samples, then learns, then samples: on a 2-core machine one core idles in each
phase. `OverlapPPO` asks the remote env runners for batch k+1 *before* it updates on batch k,
so sampling (one core) and the learner update (the other) run at the same time. The price is
a behaviour policy one update behind the learner; PPO's ratio is taken against the logged
behaviour log-probabilities, so the loss stays correct, and each batch is still used once.

With no remote env runner (nothing to overlap with) it is RLlib's PPO unchanged.
"""

from __future__ import annotations

from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.core import ALL_MODULES
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

_TAG = "overlap_sample"


def _sample_with_metrics(runner):
    return runner.sample(), runner.get_metrics()


class OverlapPPOConfig(PPOConfig):
    """`PPOConfig` that builds `OverlapPPO`."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or OverlapPPO)


class OverlapPPO(PPO):
    """PPO with sampling of the next batch overlapped with the update on this one."""

    #: A request for the next batch is with the runners / its result, not yet trained on.
    _sampling = False
    _ready = None

    @classmethod
    @override(PPO)
    def get_default_config(cls) -> OverlapPPOConfig:
        return OverlapPPOConfig()

    @override(PPO)
    def training_step(self) -> None:
        runners = self.env_runner_group
        if not self.config.enable_env_runner_and_connector_v2 or runners.num_remote_env_runners() == 0:
            return super().training_step()

        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            if self._ready is None:
                if not self._sampling:  # the first iteration, or the first after a restore
                    self._request_samples()
                self.wait_for_samples()
            (episodes, env_runner_results), self._ready = self._ready, None
            if not episodes:
                return
            self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
            # The runners start on the next batch now, with the weights they hold.
            self._request_samples()

        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)),
                    NUM_MODULE_STEPS_TRAINED_LIFETIME: self.metrics.peek(
                        (LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), default=0),
                },
                num_epochs=self.config.num_epochs,
                minibatch_size=self.config.minibatch_size,
                shuffle_batch_per_epoch=self.config.shuffle_batch_per_epoch,
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            # Queued behind the sample in flight (an actor runs its calls in order): the
            # batch after next is sampled with these weights.
            runners.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(learner_results[0].keys()) - {ALL_MODULES},
                inference_only=True,
            )

    def wait_for_samples(self) -> None:
        """Waits for the batch in flight, if any, and keeps it for the next iteration (so a
        benchmark can time whole iterations without the next one's sampling leaking out)."""
        if not self._sampling:
            return
        # Each runner samples `rollout_fragment_length` steps per env: together one batch.
        results = self.env_runner_group.fetch_ready_async_reqs(tags=_TAG, timeout_seconds=None)
        self._sampling = False
        episodes, metrics = [], []
        for _, (runner_episodes, runner_metrics) in results:
            episodes.extend(runner_episodes)
            metrics.append(runner_metrics)
        self._ready = (episodes, metrics)

    def _request_samples(self) -> None:
        self.env_runner_group.foreach_env_runner_async(_sample_with_metrics, tag=_TAG)
        self._sampling = True
