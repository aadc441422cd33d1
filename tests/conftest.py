"""Test-session set-up: nothing a test does may write outside a temporary folder.

RLlib algorithms built directly (`config.build_algo()`) log under Ray's default results
folder, ``~/ray_results``, fixed when Ray is imported; point it at a temporary folder.
"""

import tempfile

RESULTS_DIR = tempfile.mkdtemp(prefix="memory_agents_tests_ray_results_")


def pytest_configure(config):
    import ray.train.constants
    import ray.tune.experiment.experiment
    import ray.tune.trainable.trainable

    for module in (ray.train.constants, ray.tune.trainable.trainable, ray.tune.experiment.experiment):
        module.DEFAULT_STORAGE_PATH = RESULTS_DIR
