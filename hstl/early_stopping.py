"""Early stopping on the validation score: the rule alone, as a small class the training loop consults.

A run evaluates every `eval_steps` optimizer steps. It stops after `patience` evaluations in a row that did not beat
the best validation mean F1 so far by more than `threshold`, or at `max_steps`, whichever comes first; the best
checkpoint (any higher score) is the one it keeps. With `patience=None` it always runs to `max_steps`.
"""

from __future__ import annotations

from typing import Any


class EarlyStopping:
    """Counts evaluations without a new best score and says when to stop.

    Example, `patience=2`, evaluations at steps 100, 200, ...: improved at 100 and 200, not at 300 and 400: `update`
    returns True at step 400, and `stopped_at_step` is 400.

    With `threshold=0.01`, best scores 0.800, then 0.805 and 0.809: neither beats 0.800 by more than 0.01, so both
    count against the patience (0.809 is still the best model kept).

    Args:
        patience: evaluations in a row without improvement that stop the run, at least 1; `None` never stops.
        threshold: how much an evaluation must beat the best score so far to count as an improvement, at least 0.

    Raises:
        ValueError: if `patience` is not `None` or a positive integer, or `threshold` is negative.
    """

    def __init__(self, patience: int | None, threshold: float = 0.0) -> None:
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"`patience` must be None or a positive integer, got {patience!r}")
        if not threshold >= 0:
            raise ValueError(f"`threshold` must be a non-negative score difference, got {threshold!r}")
        self.patience = patience
        self.threshold = threshold
        self.evaluations_without_improvement = 0
        self.stopped_at_step: int | None = None

    def improves(self, best_before: float | None, score: float | None) -> bool:
        """Whether `score` (None: no score) beats `best_before` (None: nothing yet) by more than the threshold."""
        return score is not None and (best_before is None or score > best_before + self.threshold)

    def update(self, step: int, improved: bool) -> bool:
        """Records the evaluation at `step`; True when the run should stop there."""
        self.evaluations_without_improvement = 0 if improved else self.evaluations_without_improvement + 1
        if self.patience is not None and self.evaluations_without_improvement >= self.patience:
            self.stopped_at_step = step
        return self.stopped_at_step is not None

    def state_dict(self) -> dict[str, Any]:
        """Plain values for the JSON trainer state of a checkpoint."""
        return {"evaluations_without_improvement": self.evaluations_without_improvement,
                "stopped_at_step": self.stopped_at_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict()`; a checkpoint saved before early stopping existed holds neither key."""
        self.evaluations_without_improvement = int(state.get("evaluations_without_improvement", 0))
        self.stopped_at_step = state.get("stopped_at_step")
