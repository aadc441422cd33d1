"""Test-session set-up: nothing a test does may write outside a temporary folder.

RLlib algorithms built directly (`config.build_algo()`) log under Ray's default results
folder, ``~/ray_results``, fixed when Ray is imported; point it at a temporary folder.
"""

import tempfile

import pytest

RESULTS_DIR = tempfile.mkdtemp(prefix="memory_agents_tests_ray_results_")


def pytest_configure(config):
    import ray.train.constants
    import ray.tune.experiment.experiment
    import ray.tune.trainable.trainable

    for module in (ray.train.constants, ray.tune.trainable.trainable, ray.tune.experiment.experiment):
        module.DEFAULT_STORAGE_PATH = RESULTS_DIR


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for one test module (4 logical CPUs: room for a remote env runner or two
    learners beside the trainer), one torch thread; shut down after the module."""
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(num_cpus=4, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()
