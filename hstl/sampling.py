"""Multi-task batch sampling for HSTL training.

Training concatenates every task's tokenized rows into one dataset: task 0's rows first, then task 1's, and so on.
`MultiTaskBatchSampler` decides which task fills each example slot and which row of that task goes there, and yields
batches of *global* indices into that concatenation, for use as `DataLoader(dataset, batch_sampler=sampler)`.

How often each task is picked is set by `task_probabilities`: proportional to corpus size, uniform, or the
temperature-scaled compromise between the two that multilingual and multi-task training commonly use.

Given the rows' lengths, the sampler also groups rows of similar length into the same batch, as transformers'
`LengthGroupedSampler` (`group_by_length`) does: a batch is padded to its longest row, and padding is wasted compute.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import numbers
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from .run_config import BATCH_MODES, SAMPLING_STRATEGIES



# Tags that keep the task-choice stream and the row-order streams apart, so that no (seed, epoch) of one can ever
# reproduce a (seed, task, cycle) of the other.
_TASK_CHOICE_STREAM = 0
_ROW_ORDER_STREAM = 1
_BATCH_ORDER_STREAM = 2

# Settings that fix the stream besides (seed, epoch). `load_state_dict` refuses a state saved with other values:
# resuming with `skip_first_batches` on a different stream would silently skip or repeat data.
_STREAM_SETTINGS = ("task_sizes", "batch_size", "strategy", "alpha", "batch_mode", "num_batches", "megabatch_batches",
                    "lengths_digest")
# Settings that states saved before length grouping existed lack; they were ungrouped streams.
_SETTINGS_ADDED_LATER = {"megabatch_batches": 50, "lengths_digest": None}


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Return `value` as an `int` if it is an integer (not a bool) of at least `minimum`, else raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got the bool {value!r}")
    try:
        as_int = operator.index(value)  # accepts numpy integers, rejects floats such as 2.0
    except TypeError:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r} ({type(value).__name__})") from None
    if as_int < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {as_int}")
    return as_int


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return `value` if it is one of `choices`, else raise ValueError listing them."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}")
    return value


def _check_task_sizes(task_sizes: Sequence[int]) -> list[int]:
    """Return `task_sizes` as a list of positive ints, else raise ValueError naming the offending entry."""
    # Any iterable of ints will do (a numpy array of dataset lengths, say), but a string is never meant.
    if isinstance(task_sizes, (str, bytes, dict)) or not hasattr(task_sizes, "__iter__"):
        raise ValueError(f"`task_sizes` must be a sequence of positive integers, got {type(task_sizes).__name__}")
    sizes = list(task_sizes)
    if not sizes:
        raise ValueError("`task_sizes` must list at least one task, got an empty sequence")
    return [_check_int(f"task_sizes[{task}]", size, minimum=1) for task, size in enumerate(sizes)]


def _check_lengths(lengths: Sequence[int], total_rows: int) -> np.ndarray:
    """Return `lengths` as an int64 array of `total_rows` non-negative values, else raise ValueError."""
    if isinstance(lengths, (str, bytes, dict)) or not hasattr(lengths, "__len__"):
        raise ValueError(f"`lengths` must be a sequence of {total_rows} integers, got {type(lengths).__name__}")
    if len(lengths) != total_rows:
        raise ValueError(f"`lengths` must hold one length per row, {total_rows}, got {len(lengths)}")
    as_array = np.asarray(lengths)
    if as_array.dtype.kind not in "iu" or (as_array < 0).any():
        raise ValueError(f"`lengths` must be non-negative integers, got dtype {as_array.dtype} "
                         f"(minimum {as_array.min() if as_array.size else None})")
    return as_array.astype(np.int64)


def _check_alpha(alpha: Any) -> float:
    """Return `alpha` as a float if it lies in (0, 1], else raise ValueError."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be a number in (0, 1], got {alpha!r}")
    return float(alpha)


def task_probabilities(task_sizes: Sequence[int], strategy: str, alpha: float = 1.0) -> list[float]:
    """Probability of drawing each task, given how many rows each task has.

    Args:
        task_sizes: number of rows of each task, in task order; all positive.
        strategy: how sizes turn into probabilities:
            - `"proportional"`: `p_i = n_i / sum_j n_j`, so every row is equally likely; small corpora are rarely seen.
            - `"temperature"`: `p_i ∝ n_i ** alpha`. `alpha = 1` is proportional and `alpha -> 0` tends to uniform;
              values in between (0.3-0.7 are usual) lift small corpora without drowning the large ones.
            - `"uniform"`: `p_i = 1 / num_tasks`, whatever the sizes.
        alpha: exponent of the `"temperature"` strategy (`1 / T` in temperature terms), in (0, 1]. It is checked for
            every strategy, so a nonsense value never hides in a config, but only `"temperature"` uses it.

    Returns:
        One probability per task, in task order, summing to 1.

    Raises:
        ValueError: if `task_sizes` is empty or holds a non-positive or non-integer size, if `strategy` is unknown,
            or if `alpha` is outside (0, 1].
    """
    sizes = _check_task_sizes(task_sizes)
    _check_choice("strategy", strategy, SAMPLING_STRATEGIES)
    alpha = _check_alpha(alpha)
    if strategy == "uniform":
        weights = [1.0] * len(sizes)
    elif strategy == "proportional":
        weights = [float(size) for size in sizes]
    else:
        weights = [float(size) ** alpha for size in sizes]
    total_weight = math.fsum(weights)
    return [weight / total_weight for weight in weights]


class MultiTaskBatchSampler(Sampler[list[int]]):
    """Batch sampler over the concatenation of several tasks' rows.

    Each example slot gets a task drawn with `task_probabilities(task_sizes, strategy, alpha)`: once per batch in
    `"homogeneous"` mode (every batch holds one task, so the model runs one CRF per batch), once per slot in `"mixed"`
    mode. Within a task, rows come from a shuffled order without replacement; when a task's order is used up it is
    reshuffled, so small tasks cycle and large tasks are simply not exhausted. Each task's row stream continues from
    one epoch to the next, so a large task shows all its rows before it repeats any, even when an epoch is too short
    to cover it.

    With `lengths` (one per row of the concatenation, e.g. sub-tokens per window), batches are length-grouped: the
    rows an epoch draws for one task (homogeneous mode) or for all tasks (mixed mode) are cut, in draw order, into
    megabatches of `megabatch_batches * batch_size` rows; each megabatch is sorted by length, longest first, and cut
    into batches; then the order of these batches is shuffled. Grouping only reorders: an epoch serves the same rows,
    and in homogeneous mode the same task at each step, as without it.

    The batches of an epoch are a pure function of `(seed, epoch)` and of the settings: nothing depends on the
    process, on earlier iteration or on global RNG state. This is what lets Accelerate shard the batches across
    processes (process `k` takes batches `k, k + n, ...`) and lets `accelerate.skip_first_batches` resume mid-epoch.

    Typical use with Accelerate:

    ```python
    sampler = MultiTaskBatchSampler(task_sizes, batch_size=32, strategy="temperature", alpha=0.5, seed=args.seed)
    train_dataloader = accelerator.prepare(DataLoader(dataset, batch_sampler=sampler, collate_fn=collator))
    # Keep `sampler.state_dict()` in your JSON trainer state and call `load_state_dict` on resume (as
    # `hstl.training` does): `register_for_checkpointing` would pickle it and unpickle it on load.
    for epoch in range(starting_epoch, num_epochs):
        # Both calls: on one process the prepared loader resets the sampler's epoch to its own counter at every
        # `iter()`, while on several processes its shard wrapper does not forward `set_epoch` to the sampler.
        train_dataloader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        if epoch == starting_epoch and resume_step:
            active_dataloader = accelerator.skip_first_batches(train_dataloader, resume_step)
        else:
            active_dataloader = train_dataloader
        for batch in active_dataloader:
            ...
    ```

    Args:
        task_sizes: number of rows of each task, in the order the tasks are concatenated.
        batch_size: examples per batch; every batch is full.
        strategy: `"proportional"`, `"temperature"` or `"uniform"`; see `task_probabilities`.
        alpha: exponent of the `"temperature"` strategy, in (0, 1].
        batch_mode: `"homogeneous"` (one task per batch) or `"mixed"` (one task per example).
        seed: non-negative seed of all the sampler's randomness.
        num_batches: batches per epoch; defaults to `ceil(sum(task_sizes) / batch_size)`, one pass's worth of rows.
        lengths: length of every row of the concatenation, `sum(task_sizes)` non-negative integers; `None` (the
            default) leaves batches ungrouped.
        megabatch_batches: batches per megabatch when `lengths` is given (transformers' `mega_batch_mult`, 50).

    Raises:
        ValueError: on any argument of the wrong type or out of range, naming the argument.
    """

    def __init__(
        self,
        task_sizes: Sequence[int],
        batch_size: int,
        strategy: str = "proportional",
        alpha: float = 1.0,
        batch_mode: str = "homogeneous",
        seed: int = 0,
        num_batches: int | None = None,
        lengths: Sequence[int] | None = None,
        megabatch_batches: int = 50,
    ) -> None:
        super().__init__()
        self.task_sizes = tuple(_check_task_sizes(task_sizes))
        self.batch_size = _check_int("batch_size", batch_size, minimum=1)
        self.strategy = _check_choice("strategy", strategy, SAMPLING_STRATEGIES)
        self.alpha = _check_alpha(alpha)
        self.batch_mode = _check_choice("batch_mode", batch_mode, BATCH_MODES)
        self.seed = _check_int("seed", seed, minimum=0)
        total_rows = sum(self.task_sizes)
        if num_batches is None:
            num_batches = math.ceil(total_rows / self.batch_size)
        self.num_batches = _check_int("num_batches", num_batches, minimum=1)
        self.megabatch_batches = _check_int("megabatch_batches", megabatch_batches, minimum=1)
        self.lengths = None if lengths is None else _check_lengths(lengths, total_rows)
        # Kept in the state, so that a resume on other data (same sizes, other rows) is refused.
        self.lengths_digest = None if self.lengths is None else hashlib.sha256(self.lengths.tobytes()).hexdigest()[:16]
        self.epoch = 0

        self.probabilities = tuple(task_probabilities(self.task_sizes, self.strategy, self.alpha))
        # task_offsets[t] is the global index of task t's first row; the last entry is the total row count.
        self.task_offsets = tuple(np.cumsum((0,) + self.task_sizes).tolist())
        # draws_before_epoch[e][t]: how many rows of task t epochs 0..e-1 consumed, i.e. where epoch e starts
        # reading task t's row stream. Grown lazily; entry 0 is all zeros.
        self._draws_before_epoch: list[np.ndarray] = [np.zeros(len(self.task_sizes), dtype=np.int64)]

    @property
    def num_tasks(self) -> int:
        """Number of tasks."""
        return len(self.task_sizes)

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Select which epoch's batches the next iteration yields, like `DistributedSampler.set_epoch`."""
        self.epoch = _check_int("epoch", epoch, minimum=0)

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the current epoch's `num_batches` batches, each a list of `batch_size` global row indices."""
        global_rows = self._epoch_global_rows(self.epoch)  # shape: (num_batches, batch_size)
        if self.lengths is not None:
            global_rows = self._length_grouped(global_rows, self.epoch)
        for batch_rows in global_rows:
            yield batch_rows.tolist()

    def state_dict(self) -> dict[str, Any]:
        """What recreates the stream: `seed` and `epoch`, plus the settings, kept so a mismatch can be refused.

        Only plain Python values, so the state loads with `torch.load(..., weights_only=True)`.
        """
        state = {"seed": self.seed, "epoch": self.epoch}
        for name in _STREAM_SETTINGS:
            value = getattr(self, name)
            state[name] = list(value) if isinstance(value, tuple) else value
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `seed` and `epoch` from `state_dict()`.

        Raises:
            ValueError: if keys are missing, or if the state was saved with other settings (task sizes, batch size,
                strategy, alpha, batch mode, number of batches, length grouping and the lengths themselves), since
                that would be a different stream.
        """
        state_dict = {**_SETTINGS_ADDED_LATER, **state_dict}
        missing = [key for key in ("seed", "epoch", *_STREAM_SETTINGS) if key not in state_dict]
        if missing:
            raise ValueError(
                f"`state_dict` must hold the keys {missing} (as `state_dict()` writes them), got {sorted(state_dict)}"
            )
        current = self.state_dict()
        mismatched = [name for name in _STREAM_SETTINGS if state_dict[name] != current[name]]
        if mismatched:
            details = "; ".join(f"{name} saved {state_dict[name]!r}, here {current[name]!r}" for name in mismatched)
            raise ValueError(f"`state_dict` comes from a sampler with other settings, so another stream: {details}")
        self.seed = _check_int("state_dict['seed']", state_dict["seed"], minimum=0)
        self.epoch = _check_int("state_dict['epoch']", state_dict["epoch"], minimum=0)
        # The cached stream positions belong to the old seed.
        self._draws_before_epoch = self._draws_before_epoch[:1]

    def _slot_tasks(self, epoch: int) -> np.ndarray:
        """Task of every example slot of `epoch`.

        Returns:
            Int64 array of shape `(num_batches, batch_size)`; in homogeneous mode each row holds one value.
        """
        rng = np.random.default_rng([self.seed, _TASK_CHOICE_STREAM, epoch])
        if self.batch_mode == "homogeneous":
            # shape: (num_batches,)
            batch_tasks = rng.choice(self.num_tasks, size=self.num_batches, p=self.probabilities)
            return np.repeat(batch_tasks[:, None], self.batch_size, axis=1)
        return rng.choice(self.num_tasks, size=(self.num_batches, self.batch_size), p=self.probabilities)

    def _draws_before(self, epoch: int) -> np.ndarray:
        """Rows of each task consumed by epochs `0 .. epoch - 1`, shape `(num_tasks,)`.

        Replays only the cheap task choices of earlier epochs, never their row orders.
        """
        while len(self._draws_before_epoch) <= epoch:
            replayed_epoch = len(self._draws_before_epoch) - 1
            counts = np.bincount(self._slot_tasks(replayed_epoch).ravel(), minlength=self.num_tasks)
            self._draws_before_epoch.append(self._draws_before_epoch[-1] + counts)
        return self._draws_before_epoch[epoch]

    def _cycle_order(self, task: int, cycle: int) -> np.ndarray:
        """Shuffled local row indices of `task` for its `cycle`-th pass, shape `(task_sizes[task],)`."""
        rng = np.random.default_rng([self.seed, _ROW_ORDER_STREAM, task, cycle])
        return rng.permutation(self.task_sizes[task])

    def _task_rows(self, task: int, start: int, count: int) -> np.ndarray:
        """Positions `start .. start + count - 1` of `task`'s endless row stream, as local row indices.

        The stream is the concatenation of `_cycle_order(task, 0)`, `_cycle_order(task, 1)`, ...

        Returns:
            Int64 array of shape `(count,)`.
        """
        size = self.task_sizes[task]
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        first_cycle, last_cycle = start // size, (start + count - 1) // size
        stream = np.concatenate([self._cycle_order(task, cycle) for cycle in range(first_cycle, last_cycle + 1)])
        offset_in_first_cycle = start - first_cycle * size
        return stream[offset_in_first_cycle : offset_in_first_cycle + count]

    def _epoch_global_rows(self, epoch: int) -> np.ndarray:
        """Global row index of every example slot of `epoch`, shape `(num_batches, batch_size)`."""
        slot_tasks = self._slot_tasks(epoch)  # shape: (num_batches, batch_size)
        stream_starts = self._draws_before(epoch)  # shape: (num_tasks,)
        global_rows = np.empty_like(slot_tasks)
        for task in range(self.num_tasks):
            # Boolean indexing visits slots in batch order, so each task's rows are read in stream order.
            task_slots = slot_tasks == task
            local_rows = self._task_rows(task, int(stream_starts[task]), int(task_slots.sum()))
            global_rows[task_slots] = self.task_offsets[task] + local_rows
        return global_rows

    def _length_grouped(self, global_rows: np.ndarray, epoch: int) -> np.ndarray:
        """`global_rows` (shape `(num_batches, batch_size)`) with each group's rows regrouped by length.

        A group is the batches of one task in homogeneous mode, every batch in mixed mode; its batches keep their
        positions, so the task of each step does not change.
        """
        if self.batch_mode == "homogeneous":
            first_rows = global_rows[:, 0]  # a batch holds one task: its first row tells which
            group_of_batch = np.searchsorted(np.asarray(self.task_offsets), first_rows, side="right") - 1
        else:
            group_of_batch = np.zeros(self.num_batches, dtype=np.int64)
        grouped = np.empty_like(global_rows)
        for group in np.unique(group_of_batch):
            positions = np.flatnonzero(group_of_batch == group)  # the group's batches, in step order
            rows = global_rows[positions].ravel()  # in draw order
            batches = self._sorted_megabatches(rows)  # shape: (len(positions), batch_size)
            rng = np.random.default_rng([self.seed, _BATCH_ORDER_STREAM, epoch, int(group)])
            grouped[positions] = batches[rng.permutation(len(positions))]
        return grouped

    def _sorted_megabatches(self, rows: np.ndarray) -> np.ndarray:
        """`rows` cut into megabatches, each sorted by length (longest first, ties in draw order), as batches.

        Returns:
            Int64 array of shape `(len(rows) // batch_size, batch_size)`.
        """
        megabatch_rows = self.megabatch_batches * self.batch_size
        sorted_rows = []
        for start in range(0, len(rows), megabatch_rows):
            megabatch = rows[start : start + megabatch_rows]
            sorted_rows.append(megabatch[np.argsort(-self.lengths[megabatch], kind="stable")])
        return np.concatenate(sorted_rows).reshape(-1, self.batch_size)
