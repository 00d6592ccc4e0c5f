"""Early stopping on a validation score, the one rule every training loop follows."""
from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np


class EarlyStopping:
    """Keeps a copy of the best-scoring state and says when `patience` validations in a row brought no gain.

    >>> stop = EarlyStopping(patience=2)
    >>> stop.observe(0.1, lambda: "a"); stop.observe(0.05, lambda: "b"); stop.observe(0.07, lambda: "c")
    >>> stop.best, stop.state, stop.should_stop
    (0.1, 'a', True)
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.best, self.state, self.since_best = -1.0, None, 0

    def observe(self, score: float, state: Callable[[], object]) -> None:
        """Record a validation score; `state()` is called (and deep-copied) only when it is the best so far."""
        if score > self.best:
            self.best, self.since_best, self.state = score, 0, copy.deepcopy(state())
        else:
            self.since_best += 1

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience

    def record(self, history: list[dict], epoch: int, metrics: dict, log: Callable | None) -> bool:
        """The end of every epoch: append its metrics to `history`, hand them to `log`, say whether to stop."""
        history.append(metrics)
        if log is not None:
            log(epoch, metrics)
        return self.should_stop

    def restore(self, model) -> None:
        """Load the best state into `model` (nothing when no validation ran)."""
        if self.state is not None:
            model.load_state_dict(self.state)


def training_problems(history: list[dict]) -> list[str]:
    """What makes a training run unfit to serve: no epoch, a non-finite loss or gradient, or a loss that never fell
    below the first epoch's."""
    if not history:
        return ["no training epoch ran"]
    problems = [f"epoch {h['epoch']}: {k} is {h[k]}" for h in history for k in ("loss", "grad_norm")
                if not np.isfinite(h[k])]
    if not problems and len(history) > 1 and not min(h["loss"] for h in history) < history[0]["loss"]:
        problems.append(f"the loss did not fall: {history[0]['loss']:.4f} at epoch 1, never lower after it")
    return problems
