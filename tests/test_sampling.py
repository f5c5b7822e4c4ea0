"""Tests for hstl/sampling.py: task probabilities and the multi-task batch sampler.

Frequency checks use a bound of `FREQUENCY_Z` binomial standard errors per task. Each batch (homogeneous mode) or
each slot (mixed mode) is an independent draw of its task, so the count of task i over N draws is Binomial(N, p_i);
a deviation beyond 5 standard errors has probability < 6e-7 per check (normal tail), < 2e-5 for all checks here.
The streams are seeded, so a pass or a failure is also reproducible.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from hstl.run_config import BATCH_MODES, SAMPLING_STRATEGIES as STRATEGIES
from hstl.sampling import MultiTaskBatchSampler, task_probabilities

FREQUENCY_Z = 5.0
# Deliberately unequal sizes so that the three strategies give clearly different probabilities.
SIZES = [400, 60, 9]


def task_ids(sampler: MultiTaskBatchSampler, batches: list[list[int]]) -> np.ndarray:
    """Task of every index in `batches`, shape `(num_batches, batch_size)`."""
    offsets = np.asarray(sampler.task_offsets)
    return np.searchsorted(offsets, np.asarray(batches), side="right") - 1


def binomial_bound(probability: float, num_draws: int) -> float:
    """Largest accepted gap between an observed frequency and `probability` over `num_draws` draws."""
    return FREQUENCY_Z * math.sqrt(probability * (1.0 - probability) / num_draws)


def offsets_of(sampler: MultiTaskBatchSampler) -> np.ndarray:
    return np.asarray(sampler.task_offsets)


def local_row_streams(sampler: MultiTaskBatchSampler, epochs: range) -> list[list[int]]:
    """For each task, the local rows it served, in the order served over `epochs`."""
    streams: list[list[int]] = [[] for _ in sampler.task_sizes]
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for batch in sampler:
            for global_index in batch:
                task = int(np.searchsorted(offsets_of(sampler), global_index, side="right")) - 1
                streams[task].append(global_index - sampler.task_offsets[task])
    return streams


# ---------------------------------------------------------------------------------------------------- probabilities


def test_task_probabilities_exact_values() -> None:
    assert task_probabilities([1, 3], "proportional") == pytest.approx([0.25, 0.75])
    assert task_probabilities([1, 3, 996], "uniform") == pytest.approx([1 / 3] * 3)
    # sqrt([1, 4]) = [1, 2]
    assert task_probabilities([1, 4], "temperature", alpha=0.5) == pytest.approx([1 / 3, 2 / 3])
    assert task_probabilities([7, 50, 3], "temperature", alpha=1.0) == pytest.approx(
        task_probabilities([7, 50, 3], "proportional")
    )
    # alpha -> 0 tends to uniform.
    assert task_probabilities([10, 100_000], "temperature", alpha=1e-9) == pytest.approx([0.5, 0.5])
    # numpy sizes (e.g. dataset lengths gathered in an array) are accepted.
    assert task_probabilities(np.array([1, 3]), "proportional") == pytest.approx([0.25, 0.75])


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=8),
    alpha=st.floats(min_value=1e-3, max_value=1.0),
)
def test_temperature_lies_between_uniform_and_proportional(sizes: list[int], alpha: float) -> None:
    temperature = task_probabilities(sizes, "temperature", alpha)
    proportional = task_probabilities(sizes, "proportional")
    assert math.fsum(temperature) == pytest.approx(1.0)
    # Larger tasks never get a smaller probability ...
    order = np.argsort(sizes, kind="stable")
    assert np.all(np.diff(np.asarray(temperature)[order]) >= -1e-12)
    # ... and the largest task's share sits between its uniform and its proportional share.
    largest = int(np.argmax(sizes))
    assert 1 / len(sizes) - 1e-12 <= temperature[largest] <= proportional[largest] + 1e-12


# ---------------------------------------------------------------------------------------------------- frequencies


def test_frequency_bound_separates_the_strategies() -> None:
    """The frequency test below can fail: any two strategies differ by far more than the accepted gap."""
    probabilities = {strategy: task_probabilities(SIZES, strategy, alpha=0.5) for strategy in STRATEGIES}
    for first in STRATEGIES:
        for second in STRATEGIES:
            if first != second:
                gaps = np.abs(np.subtract(probabilities[first], probabilities[second]))
                assert gaps.max() > 4 * binomial_bound(0.5, num_draws=20_000)


@pytest.mark.parametrize("batch_mode", BATCH_MODES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_task_frequencies_match_probabilities(strategy: str, batch_mode: str) -> None:
    # 20,000 independent task draws in both modes: batches in homogeneous mode, slots in mixed mode.
    batch_size = 4
    num_batches = 20_000 if batch_mode == "homogeneous" else 5_000
    sampler = MultiTaskBatchSampler(
        SIZES, batch_size, strategy=strategy, alpha=0.5, batch_mode=batch_mode, seed=11, num_batches=num_batches
    )
    tasks = task_ids(sampler, list(sampler))  # shape: (num_batches, batch_size)
    if batch_mode == "homogeneous":
        assert np.all(tasks == tasks[:, :1]), "a homogeneous batch mixes tasks"
        draws = tasks[:, 0]
    else:
        draws = tasks.ravel()
    frequencies = np.bincount(draws, minlength=len(SIZES)) / draws.size
    for task, probability in enumerate(task_probabilities(SIZES, strategy, alpha=0.5)):
        assert abs(frequencies[task] - probability) <= binomial_bound(probability, draws.size), (
            f"task {task}: frequency {frequencies[task]:.4f}, probability {probability:.4f}"
        )


def test_mixed_batches_do_mix_tasks() -> None:
    sampler = MultiTaskBatchSampler([50, 50], 8, strategy="uniform", batch_mode="mixed", seed=0, num_batches=50)
    tasks = task_ids(sampler, list(sampler))
    assert np.any(tasks != tasks[:, :1])


# ---------------------------------------------------------------------------------------------------- batch contents


def test_batches_are_full_global_indices_and_len_is_one_pass() -> None:
    sampler = MultiTaskBatchSampler([10, 7, 3], batch_size=4, batch_mode="mixed", seed=1)
    batches = list(sampler)
    assert len(sampler) == len(batches) == math.ceil(20 / 4)
    assert all(len(batch) == 4 and all(isinstance(index, int) for index in batch) for batch in batches)
    assert all(0 <= index < 20 for batch in batches for index in batch)


def test_rows_cycle_without_repeats_and_reshuffle() -> None:
    """Every task's row stream, across epochs, is a sequence of permutations of its rows."""
    sampler = MultiTaskBatchSampler(
        [5, 37, 1000], batch_size=8, strategy="uniform", batch_mode="mixed", seed=4, num_batches=20
    )
    streams = local_row_streams(sampler, range(4))
    for task, (size, stream) in enumerate(zip(sampler.task_sizes, streams)):
        cycles = [stream[start : start + size] for start in range(0, len(stream), size)]
        for cycle in cycles[:-1]:
            assert sorted(cycle) == list(range(size)), f"task {task} repeats a row within a cycle"
        assert len(set(cycles[-1])) == len(cycles[-1])
    small_cycles = [tuple(streams[0][start : start + 5]) for start in range(0, len(streams[0]) - 4, 5)]
    assert len(small_cycles) > 20 and len(set(small_cycles)) > 1, "the small task is never reshuffled"
    # The large task is not exhausted, so it repeats nothing, even across epochs.
    assert 0 < len(streams[2]) < 1000 and len(set(streams[2])) == len(streams[2])


# ---------------------------------------------------------------------------------------------------- determinism


def make_sampler(seed: int = 3, **overrides) -> MultiTaskBatchSampler:
    sampler_settings = dict(task_sizes=[30, 12, 5], batch_size=4, strategy="temperature", alpha=0.5, batch_mode="mixed")
    sampler_settings.update(overrides)
    return MultiTaskBatchSampler(seed=seed, **sampler_settings)


def batches_at(sampler: MultiTaskBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("batch_mode", BATCH_MODES)
def test_stream_is_a_pure_function_of_seed_and_epoch(batch_mode: str) -> None:
    first, second = make_sampler(batch_mode=batch_mode), make_sampler(batch_mode=batch_mode)
    assert batches_at(first, 0) == batches_at(second, 0) == list(first)  # same seed: same stream, every time
    assert batches_at(first, 1) != batches_at(first, 0)
    assert batches_at(make_sampler(seed=4, batch_mode=batch_mode), 0) != batches_at(first, 0)
    # Jumping straight to an epoch gives what walking through the earlier ones gives.
    walked = [batches_at(first, epoch) for epoch in range(4)][-1]
    assert batches_at(make_sampler(batch_mode=batch_mode), 3) == walked
    # Global RNG state plays no part.
    torch.manual_seed(123)
    np.random.seed(123)
    assert batches_at(second, 3) == walked


def test_state_dict_round_trip() -> None:
    saved = make_sampler(seed=8)
    saved.set_epoch(5)
    buffer = io.BytesIO()
    torch.save(saved.state_dict(), buffer)
    buffer.seek(0)
    restored = make_sampler(seed=0)
    # Plain Python values only: loads under the safe unpickler too.
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert (restored.seed, restored.epoch) == (8, 5)
    assert list(restored) == list(saved)
    assert batches_at(restored, 6) == batches_at(saved, 6)


def test_load_state_dict_refuses_other_settings_and_missing_keys() -> None:
    state = make_sampler().state_dict()
    with pytest.raises(ValueError, match="batch_size saved 4, here 8"):
        make_sampler(batch_size=8).load_state_dict(state)
    with pytest.raises(ValueError, match="task_sizes"):
        make_sampler(task_sizes=[30, 12, 6]).load_state_dict(state)
    with pytest.raises(ValueError, match=r"\['epoch'\]"):
        make_sampler().load_state_dict({key: value for key, value in state.items() if key != "epoch"})


# ---------------------------------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"task_sizes": []}, "task_sizes"),
        ({"task_sizes": "abc"}, "task_sizes"),
        ({"task_sizes": [3, 0]}, r"task_sizes\[1\]"),
        ({"task_sizes": [3, -2]}, r"task_sizes\[1\]"),
        ({"task_sizes": [2.5]}, r"task_sizes\[0\]"),
        ({"strategy": "softmax"}, "strategy"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": "0.5"}, "alpha"),
    ],
)
def test_task_probabilities_rejects_bad_arguments(kwargs: dict, argument: str) -> None:
    arguments = {"task_sizes": [3, 4], "strategy": "temperature", "alpha": 0.5} | kwargs
    with pytest.raises(ValueError, match=f"`{argument}`"):
        task_probabilities(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"task_sizes": []}, "task_sizes"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"strategy": "round_robin"}, "strategy"),
        ({"alpha": -0.1}, "alpha"),
        ({"batch_mode": "interleaved"}, "batch_mode"),
        ({"seed": -1}, "seed"),
        ({"num_batches": 0}, "num_batches"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs: dict, argument: str) -> None:
    arguments = {"task_sizes": [3, 4], "batch_size": 2} | kwargs
    with pytest.raises(ValueError, match=f"`{argument}`"):
        MultiTaskBatchSampler(**arguments)


def test_sampler_methods_reject_bad_arguments() -> None:
    sampler = MultiTaskBatchSampler([3, 4], batch_size=2)
    with pytest.raises(ValueError, match="`epoch`"):
        sampler.set_epoch(-1)


# ---------------------------------------------------------------------------------------------------- accelerate


def index_dataloader(sampler: MultiTaskBatchSampler) -> DataLoader:
    """A DataLoader whose every row is its own global index, so batches show which rows were read."""
    dataset = TensorDataset(torch.arange(sampler.task_offsets[-1]))
    return DataLoader(dataset, batch_sampler=sampler)


def loaded_batches(dataloader) -> list[list[int]]:
    return [batch[0].tolist() for batch in dataloader]


def test_prepared_dataloader_and_resume_from_saved_state(tmp_path) -> None:
    reference = make_sampler(seed=21, num_batches=10)
    accelerator = Accelerator(cpu=True)
    sampler = make_sampler(seed=21, num_batches=10)
    train_dataloader = accelerator.prepare(index_dataloader(sampler))
    accelerator.register_for_checkpointing(sampler)
    assert loaded_batches(train_dataloader) == batches_at(reference, 0)

    # Interrupted in epoch 2 after 4 batches: the checkpoint holds (seed, epoch).
    train_dataloader.set_epoch(2)
    sampler.set_epoch(2)
    assert loaded_batches(train_dataloader) == batches_at(reference, 2)
    accelerator.save_state(str(tmp_path / "checkpoint"))

    # A new run, seeded differently, resumes from the checkpoint with the loop recipe of the class docstring.
    resumed_accelerator = Accelerator(cpu=True)
    resumed_sampler = make_sampler(seed=0, num_batches=10)
    resumed_dataloader = resumed_accelerator.prepare(index_dataloader(resumed_sampler))
    resumed_accelerator.register_for_checkpointing(resumed_sampler)
    resumed_accelerator.load_state(str(tmp_path / "checkpoint"))
    starting_epoch, resume_step = resumed_sampler.epoch, 4
    served = {}
    for epoch in range(starting_epoch, starting_epoch + 2):
        resumed_dataloader.set_epoch(epoch)
        resumed_sampler.set_epoch(epoch)
        if epoch == starting_epoch:
            active_dataloader = resumed_accelerator.skip_first_batches(resumed_dataloader, resume_step)
        else:
            active_dataloader = resumed_dataloader
        served[epoch] = loaded_batches(active_dataloader)
    assert served == {2: batches_at(reference, 2)[resume_step:], 3: batches_at(reference, 3)}


@pytest.mark.parametrize("batch_mode", BATCH_MODES)
def test_sharding_across_processes(batch_mode: str) -> None:
    """Simulated processes, each with its own sampler, take batches k, k + n, ... of one shared stream."""
    num_processes, epoch, resume_step = 2, 3, 2
    full_stream = batches_at(make_sampler(batch_mode=batch_mode, num_batches=12), epoch)
    for process_index in range(num_processes):
        sampler = make_sampler(batch_mode=batch_mode, num_batches=12)
        shard = prepare_data_loader(
            index_dataloader(sampler), num_processes=num_processes, process_index=process_index
        )
        shard.set_epoch(epoch)
        sampler.set_epoch(epoch)
        expected = full_stream[process_index::num_processes]
        assert loaded_batches(shard) == expected
        assert loaded_batches(skip_first_batches(shard, resume_step)) == expected[resume_step:]


# ---------------------------------------------------------------------------------------------------- length grouping


def row_lengths(sampler_sizes: list[int], seed: int = 0) -> np.ndarray:
    """Distinct lengths 1..N in a seeded random order: every row's place in a sorted order is unique."""
    total_rows = sum(sampler_sizes)
    return np.random.default_rng(seed).permutation(total_rows) + 1


def grouped_sampler(seed: int = 3, **overrides) -> MultiTaskBatchSampler:
    settings_ = dict(task_sizes=[30, 12, 5], num_batches=20, megabatch_batches=3)
    settings_.update(overrides)
    return make_sampler(seed=seed, lengths=row_lengths(settings_["task_sizes"]), **settings_)


@pytest.mark.parametrize("batch_mode", BATCH_MODES)
def test_length_grouping_reorders_the_same_rows_and_sorts_within_batches(batch_mode: str) -> None:
    grouped = grouped_sampler(batch_mode=batch_mode)
    plain = make_sampler(batch_mode=batch_mode, task_sizes=[30, 12, 5], num_batches=20)
    lengths = row_lengths([30, 12, 5])
    for epoch in range(3):
        grouped_batches, plain_batches = batches_at(grouped, epoch), batches_at(plain, epoch)
        assert grouped_batches != plain_batches
        assert sorted(sum(grouped_batches, [])) == sorted(sum(plain_batches, []))
        for batch in grouped_batches:
            assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)
        if batch_mode == "homogeneous":  # each step trains the task it would train without grouping
            assert task_ids(grouped, grouped_batches)[:, 0].tolist() == task_ids(plain, plain_batches)[:, 0].tolist()


def test_one_megabatch_over_the_epoch_gives_the_sorted_partition() -> None:
    """Mixed mode, a megabatch larger than the epoch: the batches are the epoch's rows sorted by length, cut in four."""
    sizes = [30, 12, 5]
    lengths = row_lengths(sizes)

    def length_ranks(batches: list[list[int]]) -> list[int]:
        """Where each batch stands among the epoch's batches sorted longest first: the batch order's permutation."""
        by_first_length = sorted(range(len(batches)), key=lambda index: -lengths[batches[index][0]])
        return [by_first_length.index(index) for index in range(len(batches))]

    permutations = {}
    for seed, epoch in ((3, 1), (3, 2), (4, 1)):
        grouped = grouped_sampler(seed=seed, batch_mode="mixed", megabatch_batches=100)
        plain = make_sampler(seed=seed, batch_mode="mixed", task_sizes=sizes, num_batches=20)
        epoch_rows = sum(batches_at(plain, epoch), [])
        by_length = sorted(epoch_rows, key=lambda row: -lengths[row])
        expected = sorted(by_length[start:start + 4] for start in range(0, len(by_length), 4))
        served = batches_at(grouped, epoch)
        assert sorted(served) == expected
        permutations[seed, epoch] = length_ranks(served)
    # The batch order is shuffled, differently in every epoch and for every seed.
    assert permutations[3, 1] != list(range(20))
    assert permutations[3, 1] != permutations[3, 2] and permutations[3, 1] != permutations[4, 1]


def test_grouping_cuts_padding() -> None:
    sizes = [400, 60, 9]
    lengths = np.random.default_rng(5).integers(1, 300, size=sum(sizes))
    padded = {}
    for name, sampler_lengths in (("grouped", lengths), ("plain", None)):
        sampler = MultiTaskBatchSampler(sizes, batch_size=16, seed=1, lengths=sampler_lengths)
        padded[name] = sum(16 * lengths[batch].max() for batch in sampler)
    assert padded["grouped"] < 0.6 * padded["plain"]


@pytest.mark.parametrize("batch_mode", BATCH_MODES)
def test_length_grouping_is_seeded(batch_mode: str) -> None:
    first = batches_at(grouped_sampler(seed=4, batch_mode=batch_mode), 2)
    assert first == batches_at(grouped_sampler(seed=4, batch_mode=batch_mode), 2)
    torch.manual_seed(9)
    np.random.seed(9)
    assert first == batches_at(grouped_sampler(seed=4, batch_mode=batch_mode), 2)
    assert first != batches_at(grouped_sampler(seed=5, batch_mode=batch_mode), 2)
    assert first != batches_at(grouped_sampler(seed=4, batch_mode=batch_mode), 3)


@pytest.mark.parametrize("batch_mode", BATCH_MODES)
def test_length_grouped_resume_mid_epoch_serves_the_remaining_batches(batch_mode: str) -> None:
    reference = batches_at(grouped_sampler(seed=21, batch_mode=batch_mode), 2) + batches_at(
        grouped_sampler(seed=21, batch_mode=batch_mode), 3)
    interrupted = grouped_sampler(seed=21, batch_mode=batch_mode)
    interrupted.set_epoch(2)
    buffer = io.BytesIO()
    torch.save(interrupted.state_dict(), buffer)
    buffer.seek(0)

    resumed = grouped_sampler(seed=0, batch_mode=batch_mode)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    dataloader = Accelerator(cpu=True).prepare(index_dataloader(resumed))
    served = []
    for epoch in (resumed.epoch, resumed.epoch + 1):
        dataloader.set_epoch(epoch)
        resumed.set_epoch(epoch)
        served += loaded_batches(skip_first_batches(dataloader, 7) if epoch == 2 else dataloader)
    assert served == reference[7:]


def test_load_state_dict_refuses_other_lengths_or_grouping_and_reads_older_states() -> None:
    state = grouped_sampler().state_dict()
    other_lengths = row_lengths([30, 12, 5], seed=1)
    with pytest.raises(ValueError, match="lengths_digest"):
        make_sampler(task_sizes=[30, 12, 5], num_batches=20, megabatch_batches=3, lengths=other_lengths
                     ).load_state_dict(state)
    with pytest.raises(ValueError, match="megabatch_batches saved 3, here 50"):
        grouped_sampler(megabatch_batches=50).load_state_dict(state)
    with pytest.raises(ValueError, match="lengths_digest saved '[0-9a-f]{16}', here None"):
        make_sampler(task_sizes=[30, 12, 5], num_batches=20, megabatch_batches=3).load_state_dict(state)
    # A state saved before grouping existed lacks the two new keys: it was an ungrouped stream.
    old_state = make_sampler(seed=6).state_dict()
    del old_state["megabatch_batches"], old_state["lengths_digest"]
    make_sampler().load_state_dict(old_state)
    with pytest.raises(ValueError, match="lengths_digest"):
        grouped_sampler(task_sizes=[30, 12, 5], num_batches=None, megabatch_batches=50).load_state_dict(old_state)


@pytest.mark.parametrize(
    ("lengths", "message"),
    [([3] * 46, "one length per row, 47, got 46"), ([3] * 46 + [-1], "non-negative"),
     ([2.5] * 47, "non-negative integers"), ("abc", "sequence of 47")],
)
def test_sampler_rejects_bad_lengths(lengths, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_sampler(lengths=lengths)
    with pytest.raises(ValueError, match="megabatch_batches"):
        make_sampler(lengths=[1] * 47, megabatch_batches=0)
