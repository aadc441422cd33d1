"""The memory probe's linear read-out, on states whose information content is known."""

import numpy as np
import pytest

from memory_agents.rllib.probe import fit_linear_probe


def test_probe_decodes_a_state_that_holds_the_colour():
    rng = np.random.default_rng(0)
    labels = rng.choice(["red", "green", "blue"], size=300)
    code = {"red": 0, "green": 1, "blue": 2}
    states = rng.normal(size=(300, 32))
    states[np.arange(300), [code[c] for c in labels]] += 3.0  # the colour, plus noise elsewhere
    result = fit_linear_probe(states, labels)
    assert result.accuracy > 0.9  # the Bayes rate here is about 0.95
    assert result.train_episodes == 150 and result.test_episodes == 150
    assert 0.2 < result.chance < 0.5


def test_probe_is_at_chance_on_a_state_without_the_colour():
    rng = np.random.default_rng(1)
    labels = rng.choice(["red", "green", "blue"], size=600)
    states = rng.normal(size=(600, 32))  # independent of the labels
    result = fit_linear_probe(states, labels)
    assert abs(result.accuracy - 1 / 3) < 0.1


def test_probe_needs_episodes():
    with pytest.raises(ValueError, match="at least 4 episodes"):
        fit_linear_probe(np.zeros((2, 3)), ["red", "blue"])
