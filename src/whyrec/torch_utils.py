"""Small torch helpers shared by the neural models and the text encoder.

Kept in one place so every neural piece agrees on thread limits (the machines we run on
are small and shared), on seeding (a seed must give the same model twice) and on how
weights travel to disk (plain arrays, never pickle).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from whyrec.errors import WhyrecError

DEFAULT_THREADS = 1
"""Torch threads unless $WHYREC_TORCH_THREADS says otherwise (at most 2 is wise here).

One thread is the default: on small shared CPUs, OpenMP threads that wait for each other
under contention made a training step four times slower with 2 threads than with 1.
"""


def limit_threads() -> None:
    """Cap torch's intra-op threads so training never starves the rest of the machine."""
    wanted = int(os.environ.get("WHYREC_TORCH_THREADS", DEFAULT_THREADS))
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(max(1, wanted))


def resolve_device(name: str) -> torch.device:
    """ "cpu", "cuda[:N]" or "auto" → a device torch can use, or a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WhyrecError(f"device {name!r} asked for, but torch sees no GPU; use cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; return a torch generator for data order and dropout."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def state_to_arrays(module: torch.nn.Module, prefix: str) -> dict[str, np.ndarray]:
    """A module's parameters and buffers as float32/int arrays, keys made file-name safe."""
    return {
        f"{prefix}{key.replace('.', '__')}": tensor.detach().cpu().numpy().copy()
        for key, tensor in module.state_dict().items()
    }


def load_arrays_into(module: torch.nn.Module, arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Inverse of `state_to_arrays` (copies, so memory-mapped read-only arrays are fine)."""
    state = {
        key[len(prefix) :].replace("__", "."): torch.from_numpy(np.array(value))
        for key, value in arrays.items()
        if key.startswith(prefix)
    }
    module.load_state_dict(state, strict=True)


class EarlyStopping:
    """Keeps the weights of the best validation epoch and says when patience runs out.

    Each epoch, `should_stop(network, score)` records the score; a better one stores a
    CPU copy of the weights, `patience` epochs in a row without one end training.
    `restore(network)` then moves the network to the CPU with the best weights, in eval
    mode (the neural sequence models train this way).
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_score = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def should_stop(self, network: torch.nn.Module, score: float) -> bool:
        if score > self.best_score:
            self.best_score, self.stale = score, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self, network: torch.nn.Module) -> None:
        network.to("cpu")
        if self.best_state is not None:
            network.load_state_dict(self.best_state)
        network.eval()
