"""The one Ray start-up of memory-agents: `rllib train`, the match experiment and the
supervised sweep all start (or join) Ray here, so they share thread settings and quiet logs.

Only Ray core is imported (no RLlib, no Tune), so any layer may use it.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

#: Variables every Ray worker gets: torch and BLAS take their thread count from them at
#: import, before our code runs in the worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def init_ray(
    address: Optional[str] = None,
    *,
    num_cpus: Optional[int] = None,
    torch_threads: int = 1,
    quiet: bool = True,
    log_to_driver: bool = True,
) -> None:
    """Connects to the cluster at `address`, or starts a local Ray sized to this machine.

    `torch_threads` torch/BLAS threads per process (the driver too). One is right on a
    small machine: with two threads on 2 cores a PPO iteration went from 0.6 s to 30 s,
    torch's threads fighting the env loop. `quiet` keeps Ray's own start-up and worker
    logging to warnings (the runs print their own progress); errors still show.
    `log_to_driver=False` keeps the workers' own prints out of this process's output. A
    local start is always a fresh Ray instance of this process (``address="local"``), never a
    cluster that someone's `ray start` left running. A Ray that is already initialised in this
    process is reused as it is.
    """
    import ray
    import torch

    if isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1:
        raise ValueError(f"torch threads must be an integer >= 1, got {torch_threads!r}")
    torch.set_num_threads(torch_threads)
    if quiet:
        quiet_process()
    if ray.is_initialized():
        return
    runtime_env: dict = {"env_vars": {name: str(torch_threads) for name in THREAD_VARIABLES}}
    if quiet:
        runtime_env["worker_process_setup_hook"] = "memory_agents.ray_init.quiet_process"
    level = logging.ERROR if quiet else logging.INFO
    if address:
        ray.init(address=address, runtime_env=runtime_env, logging_level=level, log_to_driver=log_to_driver)
        return
    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count() or 2,
        include_dashboard=False,
        runtime_env=runtime_env,
        logging_level=level,
        log_to_driver=log_to_driver,
    )


def quiet_process() -> None:
    """Ray's, Tune's and RLlib's INFO/WARNING logs and deprecation warnings off in this
    process (the driver, and each worker through Ray's setup hook). Errors still show."""
    import warnings

    import ray  # noqa: F401  (importing Ray sets its loggers' levels: set ours after)
    import ray.rllib  # noqa: F401

    for name in ("ray", "ray.rllib", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Tune's console output: the legacy reporter at verbosity 0 prints nothing, where the
    # new one still prints its experiment header.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
