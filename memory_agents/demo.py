"""A one-minute tour of the cells: build a UR-LSTM and a plain LSTM, look at their gates, and train
both briefly on the adding task (Arjovsky et al. 2016).

    memory-agents-demo                    # or: python -m memory_agents.demo --steps 200 --length 100
"""

from __future__ import annotations

import argparse
import time

import torch

from .cells import available_cells, build_rnn
from .cells._native import backend_reason


def _adding_batch(batch: int, length: int, generator: torch.Generator):
    values = torch.rand(batch, length, generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, torch.randint(0, length // 2, (batch,), generator=generator)] = 1.0
    markers[rows, torch.randint(length // 2, length, (batch,), generator=generator)] = 1.0
    return torch.stack([values, markers], -1), (values * markers).sum(1, keepdim=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="lstm,ur-lstm", help=f"comma-separated, from {available_cells()}")
    parser.add_argument("--length", type=int, default=100, help="adding-task sequence length")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps per cell")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"cell kernels: {backend_reason()}")
    print(f"adding task, T={args.length}: predict the sum of the two marked values; "
          "predicting 1 always gives MSE ~0.167\n")
    for name in args.cells.split(","):
        try:
            torch.manual_seed(args.seed)
            rnn = build_rnn(name, 2, args.hidden_size, batch_first=True)
        except ValueError as error:
            parser.error(str(error))
        head = torch.nn.Linear(args.hidden_size, 1)
        params = [*rnn.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(params, lr=2e-3)
        gen = torch.Generator().manual_seed(args.seed)
        x_eval, y_eval = _adding_batch(500, args.length, torch.Generator().manual_seed(10_000))
        g = rnn.gate_trace(torch.zeros(1, 1, 2))["g"].flatten()
        timescales = 1.0 / (1.0 - g)
        print(f"{name}: {sum(p.numel() for p in params):,} parameters; initial timescales 1/(1-g): "
              f"median {timescales.median():.1f}, max {timescales.max():.0f} steps")
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            x, y = _adding_batch(64, args.length, gen)
            loss = torch.nn.functional.mse_loss(head(rnn(x)[0][:, -1]), y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if step % max(1, args.steps // 5) == 0 or step == args.steps:
                with torch.no_grad():
                    mse = torch.nn.functional.mse_loss(head(rnn(x_eval)[0][:, -1]), y_eval).item()
                print(f"  step {step:4d}  eval MSE {mse:.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)
        print()


if __name__ == "__main__":
    main()
