# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""PyTorch HSTL model: hierarchical shared transfer learning for biomedical NER (Chai et al., BMC Bioinformatics 23:8,
2022).

One encoder shared by all tasks (level 1), one layer per entity family shared by that family's tasks (level 2), and per
task an emission layer and a linear-chain CRF over words (level 3).

This file is copied into every saved model folder and loaded as Hub remote code: it imports only torch, transformers,
torchcrf and its siblings `configuration_hstl`, `labels_hstl` and `mentions_hstl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

# Relative imports when loaded from a model folder as remote code, top-level ones from the installed package;
# transformers' import check skips `try` blocks.
# The pipeline is imported so that `save_pretrained` (which copies this file and every file it imports relatively)
# ships it too: a saved folder then loads with `pipeline(..., trust_remote_code=True)`.
try:
    from .configuration_hstl import HSTLConfig
    from .labels_hstl import PAD_LABEL_ID
    from .mentions_hstl import mentions_to_labels, merge_mentions, word_marginals
    from .pipeline_hstl import custom_pipelines_entry
except ImportError:
    from configuration_hstl import HSTLConfig
    from labels_hstl import PAD_LABEL_ID
    from mentions_hstl import mentions_to_labels, merge_mentions, word_marginals
    from pipeline_hstl import custom_pipelines_entry


try:
    from torchcrf import CRF
except ImportError as error:  # transformers' own check would point users at the unrelated `torchcrf` package
    raise ImportError("HSTL needs the CRF layer of pytorch-crf: run `pip install pytorch-crf`") from error


@dataclass
class HSTLTokenClassifierOutput(ModelOutput):
    """
    Output of [`HSTLModel.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            CRF negative log-likelihood, reduced as `config.loss_reduction` says.
        per_example_loss (`torch.FloatTensor` of shape `(batch_size,)`, *optional*, returned when `labels` is given):
            Negative log-likelihood of each example (0 for an example with no word).
        emissions (`torch.FloatTensor` of shape `(batch_size, num_words, max_num_labels)`):
            Emission scores of each example's task head. `max_num_labels` is the largest label count among the tasks of
            the batch; the columns past an example's own label count are `-inf`, and padding words are 0.
        predictions (`torch.LongTensor` of shape `(batch_size, num_words)`, *optional*, returned when decoding):
            Viterbi label ids per word, `-100` at padding words.
        word_mask (`torch.BoolTensor` of shape `(batch_size, num_words)`):
            True at real words.
    """

    loss: torch.FloatTensor | None = None
    per_example_loss: torch.FloatTensor | None = None
    emissions: torch.FloatTensor | None = None
    predictions: torch.LongTensor | None = None
    word_mask: torch.BoolTensor | None = None


@dataclass
class HSTLMultiTaskTaggingOutput(ModelOutput):
    """
    Output of [`HSTLModel.tag`]: several heads applied to one encoder pass.

    Args:
        emissions (`dict[str, torch.FloatTensor]`): task name -> `(batch_size, num_words, num_labels_of_task)`.
        predictions (`dict[str, torch.LongTensor]`): task name -> `(batch_size, num_words)`, `-100` at padding words.
        word_mask (`torch.BoolTensor` of shape `(batch_size, num_words)`): True at real words.
        marginals (`dict[str, torch.FloatTensor]`, *optional*, returned when `return_marginals=True`): task name ->
            `(batch_size, num_words, num_labels_of_task)` CRF marginal probabilities (`crf_marginals`): at each real
            word, the probability of each label under the head's CRF given the whole window; 0 at padding words.
    """

    emissions: dict[str, torch.FloatTensor] | None = None
    predictions: dict[str, torch.LongTensor] | None = None
    word_mask: torch.BoolTensor | None = None
    marginals: dict[str, torch.FloatTensor] | None = None


def viterbi_decode(crf: CRF, emissions: torch.Tensor, word_mask: torch.Tensor) -> torch.LongTensor:
    """
    Best label sequence under `crf` for each example, fully batched (pytorch-crf's own `decode` backtracks with one
    Python `.item()` per word, which dominates inference time on long batches).

    Args:
        crf: a batch-first `torchcrf.CRF`.
        emissions: `(batch_size, num_words, num_labels)`.
        word_mask: `(batch_size, num_words)` bool, real words first (left-aligned); rows may be all False.

    Returns:
        `(batch_size, num_words)` label ids, `-100` where `word_mask` is False.
    """
    return _viterbi(crf.start_transitions, crf.end_transitions, crf.transitions, emissions, word_mask)


def viterbi_decode_heads(
    crfs: list[CRF], emissions: list[torch.Tensor], word_mask: torch.Tensor
) -> list[torch.LongTensor]:
    """
    [`viterbi_decode`] of several heads on the same words, with identical results: heads with the same number of labels
    are decoded together as one stacked batch, because on short inputs the cost of Viterbi is the number of small
    per-word tensor operations, not their size.

    Args:
        crfs: batch-first `torchcrf.CRF`s, one per head.
        emissions: per head, `(batch_size, num_words, num_labels_of_head)`.
        word_mask: `(batch_size, num_words)` bool, shared by all heads.

    Returns:
        per head, `(batch_size, num_words)` label ids, `-100` where `word_mask` is False.
    """
    return _per_head_stacked(_viterbi, crfs, emissions, word_mask)


def crf_marginals(crf: CRF, emissions: torch.Tensor, word_mask: torch.Tensor) -> torch.FloatTensor:
    """
    Marginal probability of every label at every word under `crf` (forward-backward, fully batched: products of
    probabilities in float64 on the CPU, a log-space scan or loop elsewhere, see `_marginals`):
    `P(y_w = label | emissions)`, summed over all label sequences of the example's real words and honouring the CRF's
    start, end and transition scores.

    Args:
        crf: a batch-first `torchcrf.CRF`.
        emissions: `(batch_size, num_words, num_labels)`.
        word_mask: `(batch_size, num_words)` bool, real words first (left-aligned); rows may be all False.

    Returns:
        `(batch_size, num_words, num_labels)` float32 probabilities in [0, 1], summing to 1 over the labels at each
        real word; 0 where `word_mask` is False.
    """
    return _marginals(crf.start_transitions, crf.end_transitions, crf.transitions, emissions, word_mask)


def crf_marginals_heads(
    crfs: list[CRF], emissions: list[torch.Tensor], word_mask: torch.Tensor | Sequence[torch.Tensor]
) -> list[torch.FloatTensor]:
    """[`crf_marginals`] of several heads on the same words, heads with equal label counts stacked into one batch as
    [`viterbi_decode_heads`] does. `word_mask` is shared by all heads, or one per head when each head has its own rows
    (e.g. only those where it found a mention): `emissions[h]` then has `word_mask[h].shape[0]` rows. A row's result
    does not depend on the rows beside it. Returns, per head, `(rows, num_words, num_labels_of_head)`."""
    return _per_head_stacked(_marginals, crfs, emissions, word_mask)


def _per_head_stacked(crf_function, crfs: list[CRF], emissions: list[torch.Tensor],
                      word_mask: torch.Tensor | Sequence[torch.Tensor]) -> list:
    """`crf_function(start, end, transitions, emissions, word_mask)` (`_viterbi` or `_marginals`) of each head, heads
    with the same number of labels run together as one stacked batch with per-row transition scores. `word_mask`:
    shared, or one per head (each head's own rows)."""
    word_masks = [word_mask] * len(crfs) if isinstance(word_mask, torch.Tensor) else list(word_mask)
    heads_by_label_count: dict[int, list[int]] = {}
    for head_index, head_emissions in enumerate(emissions):
        heads_by_label_count.setdefault(head_emissions.shape[-1], []).append(head_index)
    results: list[torch.Tensor | None] = [None] * len(crfs)
    for head_indices in heads_by_label_count.values():
        group = [crfs[index] for index in head_indices]
        rows = [word_masks[index].shape[0] for index in head_indices]
        repeats = torch.tensor(rows, device=word_masks[head_indices[0]].device)
        # The rows of each head one after the other; each row gets its own head's transition scores.
        stacked = crf_function(
            torch.stack([crf.start_transitions for crf in group]).repeat_interleave(repeats, dim=0, output_size=sum(rows)),
            torch.stack([crf.end_transitions for crf in group]).repeat_interleave(repeats, dim=0, output_size=sum(rows)),
            torch.stack([crf.transitions for crf in group]).repeat_interleave(repeats, dim=0, output_size=sum(rows)),
            torch.cat([emissions[index] for index in head_indices]),
            torch.cat([word_masks[index] for index in head_indices]),
        )
        for index, head_result in zip(head_indices, stacked.split(rows)):
            results[index] = head_result
    return results


@dataclass
class _RowsByLength:
    """The words of a batch as the loops over word positions take them: the rows sorted by their number of words,
    longest first, and their real words packed word by word (the layout of `torch.nn.utils.rnn.PackedSequence`), so
    that each step of a loop works on one contiguous block, the rows still inside their sentence. Several batches of
    different widths, padded to one, then decode in one call at the cost of their real words, not of the padding; each
    row's arithmetic is the same as alone. Checking the mask and finding the blocks read it on the host (three waits
    a call on an accelerator, where only heads of more than `SCAN_MAX_LABELS` labels take the loops)."""

    order: torch.Tensor
    """Sorted position -> row, for the rows with at least one word."""
    active: list[int]
    """`active[w]`: how many rows reach word `w` (the first `active[w]` sorted rows), up to the longest row's last."""
    offsets: list[int]
    """`offsets[w]`: where word `w`'s block starts in the packed words."""
    words: torch.Tensor
    """Packed word -> its index in the `(batch_size * num_words)` flattened batch."""
    sorted_rows: torch.Tensor
    """Packed word -> its sorted row."""

    @classmethod
    def of(cls, word_mask: torch.Tensor) -> "_RowsByLength":
        gaps = word_mask[:, 1:] & ~word_mask[:, :-1]  # a padding word before a real one
        if bool(gaps.any()):
            row = int(gaps.any(dim=1).nonzero()[0])
            raise ValueError(f"word_mask: expected each row's real words first (left-aligned), got a padding word "
                             f"before a real one in row {row}")
        num_words = word_mask.shape[1]
        lengths = word_mask.sum(dim=1)
        order = lengths.argsort(descending=True, stable=True)
        # shape: (num_words, batch_size): whether sorted row r reaches word w; listed word by word
        reaches = lengths[order].unsqueeze(0) > torch.arange(num_words, device=word_mask.device).unsqueeze(1)
        active = [count for count in reaches.sum(dim=1).tolist() if count]
        offsets = [0]
        for count in active[:-1]:
            offsets.append(offsets[-1] + count)
        word, sorted_rows = reaches.nonzero(as_tuple=True)
        return cls(order[: active[0] if active else 0], active, offsets, order[sorted_rows] * num_words + word,
                   sorted_rows)

    def packed(self, values: torch.Tensor) -> torch.Tensor:
        """`(batch_size, num_words, ...)` values of the real words, packed: `(real words, ...)`."""
        return values.flatten(0, 1)[self.words]

    def step(self, packed: torch.Tensor, position: int) -> torch.Tensor:
        """The packed values of word `position`: `(active[position], ...)`, of the first sorted rows."""
        return packed[self.offsets[position] : self.offsets[position] + self.active[position]]

    def sorted(self, values: torch.Tensor, per_row_dims: int) -> torch.Tensor:
        """Per-row values (of `per_row_dims` dims) of the sorted rows with words; shared ones (fewer dims) as is."""
        return _of_rows(values, self.order, per_row_dims)


def _of_rows(values: torch.Tensor, rows: torch.Tensor, per_row_dims: int) -> torch.Tensor:
    """`values[rows]` when the CRF scores `values` are per example (`per_row_dims` dims), else (shared) as they are."""
    return values[rows] if values.dim() == per_row_dims else values


def _viterbi_loop(
    start_transitions: torch.Tensor,
    end_transitions: torch.Tensor,
    transitions: torch.Tensor,
    emissions: torch.Tensor,
    word_mask: torch.Tensor,
) -> torch.LongTensor:
    """
    Batched Viterbi, one step per word, each step over the rows still inside their sentence (`_RowsByLength`).
    Transition scores are shared, `(num_labels,)` / `(num_labels, num_labels)`, or per example, `(batch_size,
    num_labels)` / `(batch_size, num_labels, num_labels)`; the arithmetic is the same either way.
    """
    batch_size, num_words, _ = emissions.shape
    predictions = torch.full((batch_size, num_words), PAD_LABEL_ID, dtype=torch.long, device=emissions.device)
    rows = _RowsByLength.of(word_mask)
    if not rows.active:
        return predictions
    start_transitions, end_transitions = rows.sorted(start_transitions, 2), rows.sorted(end_transitions, 2)
    transitions = rows.sorted(transitions, 3)
    per_row_transitions = transitions.dim() == 3
    emission_words = rows.packed(emissions)  # shape: (real words, num_labels)
    # shape: (sorted rows, num_labels): best score of a path ending in each label at the row's word so far
    score = start_transitions + rows.step(emission_words, 0)
    backpointers = []
    for position in range(1, len(rows.active)):
        count = rows.active[position]
        # shape: (count, num_labels_from, num_labels_to)
        candidate = (score[:count].unsqueeze(2) + (transitions[:count] if per_row_transitions else transitions)
                     + rows.step(emission_words, position).unsqueeze(1))
        best_score, best_previous = candidate.max(dim=1)
        score[:count] = best_score  # rows past their last word keep their final scores
        backpointers.append(best_previous)
    current_label = (score + end_transitions).argmax(dim=1)  # shape: (sorted rows,)
    # From each row's last word back; labels[w] holds word w's labels of the rows that reach it.
    labels = [current_label] * len(rows.active)
    for position in range(len(rows.active) - 1, 0, -1):
        count = rows.active[position]
        labels[position] = current_label[:count]
        previous_label = backpointers[position - 1].gather(1, current_label[:count].unsqueeze(1)).squeeze(1)
        current_label = torch.cat([previous_label, current_label[count:]])
    labels[0] = current_label
    predictions.view(-1)[rows.words] = torch.cat(labels)
    return predictions


def _marginals_loop(
    start_transitions: torch.Tensor,
    end_transitions: torch.Tensor,
    transitions: torch.Tensor,
    emissions: torch.Tensor,
    word_mask: torch.Tensor,
) -> torch.FloatTensor:
    """
    Batched forward-backward in log space (float32, whatever the emissions' dtype), one step per word. Transition
    scores are shared or per example, as in `_viterbi_loop`.
    """
    batch_size, num_words, num_labels = emissions.shape
    if num_words == 0:
        return emissions.new_zeros(batch_size, 0, num_labels, dtype=torch.float32)
    emissions = emissions.float()
    start_transitions, end_transitions = start_transitions.float(), end_transitions.float()
    # shape: (1 or batch_size, num_labels_from, num_labels_to)
    transitions = transitions.float() if transitions.dim() == 3 else transitions.float().unsqueeze(0)
    # alpha[w][b, j]: log-sum of the scores of all label prefixes ending in label j at word w. Past a row's last word
    # the last real alpha is carried along, so the final one is the row's own.
    # Per-position views made once, as in `_viterbi_loop`.
    emission_steps, emission_rows = emissions.unsqueeze(1).unbind(2), emissions.unbind(1)
    mask_steps = word_mask.unsqueeze(2).unbind(1)  # shape of each: (batch_size, 1)
    alphas = [start_transitions + emissions[:, 0]]
    for position in range(1, num_words):
        # shape: (batch_size, num_labels_from, num_labels_to)
        step = alphas[-1].unsqueeze(2) + transitions + emission_steps[position]
        alphas.append(torch.where(mask_steps[position], step.logsumexp(dim=1), alphas[-1]))
    # beta[w][b, i]: log-sum of the scores of all label suffixes after label i at word w, end transition included.
    # At and past a row's last word it is the end transition alone (word_mask is left-aligned).
    end_scores = end_transitions.expand(batch_size, num_labels)
    betas = [end_scores]
    for position in range(num_words - 2, -1, -1):
        step = transitions + (emission_rows[position + 1] + betas[-1]).unsqueeze(1)
        betas.append(torch.where(mask_steps[position + 1], step.logsumexp(dim=2), end_scores))
    # shape: (batch_size, num_words, num_labels)
    alpha, beta = torch.stack(alphas, dim=1), torch.stack(betas[::-1], dim=1)
    log_partition = (alphas[-1] + end_transitions).logsumexp(dim=1)  # shape: (batch_size,)
    marginals = (alpha + beta - log_partition[:, None, None]).exp().clamp(0.0, 1.0)
    return marginals.masked_fill(~word_mask.unsqueeze(-1), 0.0)


def _marginals_product_loop(
    start_transitions: torch.Tensor,
    end_transitions: torch.Tensor,
    transitions: torch.Tensor,
    emissions: torch.Tensor,
    word_mask: torch.Tensor,
) -> torch.FloatTensor:
    """
    Batched forward-backward with products of probabilities in float64, one step per word over the rows still inside
    their sentence (`_RowsByLength`; `word_mask` left-aligned, as in `crf_marginals`): at each word a batched
    vector-matrix product where `_marginals_loop` takes a `logsumexp` over `(batch_size, num_labels, num_labels)`
    exponentials. Every score is exponentiated once, shifted by its maximum (so nothing exceeds 1), and every forward
    and backward vector is scaled to sum 1, so a word's marginals are alpha * beta normalized over its labels and no
    scale factor is kept. A row where some step's total falls below float64's smallest normal number (scores about
    708 apart within one step), where digits are lost or all underflows, is computed by `_marginals_loop` instead.
    The result (float32) is the exact marginals rounded once, where the float32 log-space loop drifts by about 1e-6 a
    word.
    """
    batch_size, num_words, num_labels = emissions.shape
    marginals = emissions.new_zeros(batch_size, num_words, num_labels, dtype=torch.float32)
    rows = _RowsByLength.of(word_mask)
    if not rows.active:
        return marginals

    def probabilities(scores: torch.Tensor, dims) -> torch.Tensor:
        scores = scores.double()
        return (scores - scores.amax(dim=dims, keepdim=True)).exp()

    filled = rows.active[0]
    # shape: (sorted rows, num_labels_from, num_labels_to), a view when the transition scores are shared
    transition_factors = probabilities(rows.sorted(transitions, 3), (-2, -1)).expand(filled, num_labels, num_labels)
    start_factors = probabilities(rows.sorted(start_transitions, 2), -1)
    end_factors = probabilities(rows.sorted(end_transitions, 2), -1).expand(filled, num_labels)
    emission_factors = probabilities(rows.packed(emissions), -1)  # shape: (real words, num_labels)
    # alphas[w][r, j] is proportional to the summed weight of the label prefixes ending in label j at word w of sorted
    # row r, for the rows that reach word w; `totals` keeps each step's sum before scaling, shape (rows, 1).
    alpha = start_factors * rows.step(emission_factors, 0)
    alpha_totals = [alpha.sum(dim=1, keepdim=True)]
    alphas = [alpha / alpha_totals[-1]]
    for position in range(1, len(rows.active)):
        count = rows.active[position]
        alpha = (torch.bmm(alphas[-1][:count].unsqueeze(1), transition_factors[:count]).squeeze(1)
                 * rows.step(emission_factors, position))
        alpha_totals.append(alpha.sum(dim=1, keepdim=True))
        alphas.append(alpha / alpha_totals[-1])
    # betas[w][r, i] is proportional to the summed weight of the label suffixes after label i at word w, end
    # transition included; at a row's last word it is the end transition alone.
    betas, beta_totals = [end_factors[: rows.active[-1]]], []
    for position in range(len(rows.active) - 2, -1, -1):
        count = rows.active[position + 1]
        beta = torch.bmm(transition_factors[:count],
                         (rows.step(emission_factors, position + 1) * betas[-1]).unsqueeze(2)).squeeze(2)
        beta_totals.append(beta.sum(dim=1, keepdim=True))
        betas.append(torch.cat([beta / beta_totals[-1], end_factors[count : rows.active[position]]]))
    # Packed word by word, as `emission_factors`
    weights = torch.cat(alphas) * torch.cat(betas[::-1])
    weight_totals = weights.sum(dim=1, keepdim=True)
    marginals.view(-1, num_labels)[rows.words] = (weights / weight_totals).float()
    # Rows where a step's total lost digits go to log space.
    tiny = torch.finfo(torch.float64).tiny
    lost = torch.zeros(filled, dtype=torch.bool, device=emissions.device)
    lost[rows.sorted_rows[(torch.minimum(torch.cat(alpha_totals), weight_totals) < tiny).squeeze(1)]] = True
    if beta_totals and bool(torch.cat(beta_totals).min() < tiny):
        for totals in beta_totals:
            lost[: len(totals)] |= totals.squeeze(1) < tiny
    if lost.any():
        lost_rows = rows.order[lost]
        marginals[lost_rows] = _marginals_loop(
            _of_rows(start_transitions, lost_rows, 2), _of_rows(end_transitions, lost_rows, 2),
            _of_rows(transitions, lost_rows, 3), emissions[lost_rows], word_mask[lost_rows])
    return marginals


def _scan_pays(emissions: torch.Tensor, cpu_max_labels: int) -> bool:
    """Whether the CRF runs as a scan over positions (`_viterbi_scan`, `_marginals_scan`, the tree of
    `crf_negative_log_likelihood`) rather than as a loop over them: on an accelerator, where each of the loop's small
    per-word operations costs a kernel launch, for heads of at most `SCAN_MAX_LABELS` labels; on the CPU, where an
    operation costs little more than its arithmetic and the scan does `num_labels` times more of it, only up to
    `cpu_max_labels` labels."""
    num_words, num_labels = emissions.shape[1:]
    max_labels = cpu_max_labels if emissions.device.type == "cpu" else SCAN_MAX_LABELS
    return num_words > 0 and num_labels <= max_labels


def _viterbi(start_transitions, end_transitions, transitions, emissions, word_mask) -> torch.LongTensor:
    """Batched Viterbi (`_viterbi_scan` where it pays, see `_scan_pays`, else `_viterbi_loop`). Transition scores are
    shared, `(num_labels,)` / `(num_labels, num_labels)`, or per example, `(batch_size, num_labels)` /
    `(batch_size, num_labels, num_labels)`."""
    function = _viterbi_scan if _scan_pays(emissions, CPU_SCAN_MAX_LABELS["viterbi"]) else _viterbi_loop
    return function(start_transitions, end_transitions, transitions, emissions, word_mask)


def _marginals(start_transitions, end_transitions, transitions, emissions, word_mask) -> torch.FloatTensor:
    """Batched forward-backward (`_marginals_scan` where it pays, see `_scan_pays`, else `_marginals_product_loop` on
    the CPU and `_marginals_loop` elsewhere). Transition scores are shared or per example, as in `_viterbi`."""
    if _scan_pays(emissions, CPU_SCAN_MAX_LABELS["marginals"]):
        function = _marginals_scan
    else:
        function = _marginals_product_loop if emissions.device.type == "cpu" else _marginals_loop
    return function(start_transitions, end_transitions, transitions, emissions, word_mask)


SCAN_MAX_LABELS = 12
"""Most labels of a head whose CRF runs as a parallel scan over word positions on an accelerator: a few dozen tensor
operations per batch, whatever its length, where the loop over positions takes a few per word. The scan multiplies
label-by-label matrices, `num_labels` times the arithmetic of the loop, so heads with many labels (BioNLP13CG has 33)
keep the loop."""
CPU_SCAN_MAX_LABELS = {"viterbi": 0, "marginals": 0, "nll": 5}
"""The same bound on the CPU, per computation, from `benchmarks/crf_scan.py` (docs/benchmarks.md): there the loop
decodes and computes marginals faster at every label count, and the scan computes the training loss and its gradient
faster up to 5 labels."""


def _transfer_matrices(transitions: torch.Tensor, emissions: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """`M[b, t - 1, i, j]`, the score of moving from label i at word t - 1 to label j at word t (transition plus
    emission), for t >= 1; the identity of the (max, +) and (logsumexp, +) semirings (0 on the diagonal, -inf off it)
    at padding words, so that scores carry across them unchanged."""
    num_labels = emissions.shape[-1]
    # shape: (batch_size or 1, 1, num_labels_from, num_labels_to)
    transitions = transitions.unsqueeze(-3) if transitions.dim() == 3 else transitions.expand(1, 1, -1, -1)
    # shape: (batch_size, num_words - 1, num_labels_from, num_labels_to)
    matrices = transitions + emissions[:, 1:].unsqueeze(-2)
    identity = torch.full((num_labels, num_labels), float("-inf"), dtype=matrices.dtype, device=matrices.device)
    identity.fill_diagonal_(0.0)
    return torch.where(word_mask[:, 1:, None, None], matrices, identity)


def _max_plus_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """`left @ right` in the (max, +) semiring, over the last two dims: `out[i, j] = max_k left[i, k] + right[k, j]`."""
    # shape: (..., num_labels_i, num_labels_k, num_labels_j), reduced over k
    return (left.unsqueeze(-1) + right.unsqueeze(-3)).amax(dim=-2)


def _log_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """`left @ right` in the (logsumexp, +) semiring: `out[i, j] = log sum_k exp(left[i, k] + right[k, j])`, as a
    real matrix product of exponentials shifted by the row maxima of `left` and the column maxima of `right` (every
    exponential is at most 1, so nothing overflows; the matrix product is one fast kernel)."""
    left_max = left.amax(dim=-1, keepdim=True).clamp(min=torch.finfo(left.dtype).min)
    right_max = right.amax(dim=-2, keepdim=True).clamp(min=torch.finfo(right.dtype).min)
    return torch.matmul((left - left_max).exp(), (right - right_max).exp()).log() + left_max + right_max


def _scan(matrices: torch.Tensor, product, reverse: bool = False) -> torch.Tensor:
    """Inclusive prefix products `M[0] ... M[t]` along dim 1 (suffix products `M[t] ... M[n - 1]` when `reverse`), in
    ceil(log2 n) steps (Hillis-Steele). Each product is shifted by its largest entry: only differences between the
    entries of one product matter to Viterbi and to marginals, and small numbers keep float32 exact to ~1e-7."""
    num_matrices, step = matrices.shape[1], 1
    while step < num_matrices:
        # forward: x[t] <- x[t - step] x[t] for t >= step; reverse: x[t] <- x[t] x[t + step] for t < n - step
        combined = product(matrices[:, :-step], matrices[:, step:])
        combined = combined - combined.amax(dim=(-2, -1), keepdim=True)
        kept = matrices[:, num_matrices - step:] if reverse else matrices[:, :step]
        matrices = torch.cat([combined, kept] if reverse else [kept, combined], dim=1)
        step *= 2
    return matrices


def _viterbi_scan(start_transitions, end_transitions, transitions, emissions, word_mask) -> torch.LongTensor:
    """`_viterbi_loop`'s result from two parallel scans: max-plus prefix products give every word's best path scores
    (up to a constant per word), and composing the back-pointer maps from the last word back gives every word's label."""
    batch_size, num_words, num_labels = emissions.shape
    # shape: (batch_size, num_labels): best score of a path ending in each label at word 0
    first = start_transitions + emissions[:, 0]
    if num_words > 1:
        prefix = _scan(_transfer_matrices(transitions, emissions, word_mask), _max_plus_product)
        # shape: (batch_size, num_words - 1, num_labels): best score of a path ending in each label at words 1..
        later = _max_plus_product(first[:, None, None, :], prefix).squeeze(-2)
        scores = torch.cat([first.unsqueeze(1), later], dim=1)
        # back_pointers[b, t - 1, j]: the best label at word t - 1 before label j at word t (identity past the end)
        transitions_per_row = transitions.unsqueeze(1) if transitions.dim() == 3 else transitions
        candidates = scores[:, :-1].unsqueeze(3) + transitions_per_row + emissions[:, 1:].unsqueeze(2)
        labels = torch.arange(num_labels, device=emissions.device)
        back_pointers = torch.where(word_mask[:, 1:, None], candidates.argmax(dim=2), labels)
        # to_word[b, t, j]: the label at word t on the best path that ends in label j at the last word
        to_word = torch.cat([_compose_scan(back_pointers), labels.expand(batch_size, 1, num_labels)], dim=1)
        last_scores = scores[:, -1]
    else:
        to_word, last_scores = None, first
    last_label = (last_scores + end_transitions).argmax(dim=1)  # shape: (batch_size,)
    if to_word is None:
        path = last_label.unsqueeze(1)
    else:
        path = to_word.gather(2, last_label[:, None, None].expand(-1, num_words, 1)).squeeze(2)
    return path.masked_fill(~word_mask, PAD_LABEL_ID)


def _compose_scan(back_pointers: torch.LongTensor) -> torch.LongTensor:
    """Suffix compositions of label maps: `out[:, t] = f_t o f_(t+1) o ... o f_(n-1)` with `f_t = back_pointers[:, t]`,
    maps as index arrays `(batch_size, n, num_labels)`, in ceil(log2 n) gather steps."""
    num_maps, step = back_pointers.shape[1], 1
    while step < num_maps:
        # (f o g)[j] = f[g[j]]: the earlier map applied to the later one's result
        combined = back_pointers[:, :-step].gather(2, back_pointers[:, step:])
        back_pointers = torch.cat([combined, back_pointers[:, num_maps - step:]], dim=1)
        step *= 2
    return back_pointers


def _marginals_scan(start_transitions, end_transitions, transitions, emissions, word_mask) -> torch.FloatTensor:
    """`_marginals_loop`'s result from a prefix and a suffix scan in the (logsumexp, +) semiring; each word's
    forward and backward scores are known up to a constant, which a softmax over its labels removes."""
    batch_size, num_words, num_labels = emissions.shape
    emissions = emissions.float()
    start_transitions, end_transitions = start_transitions.float(), end_transitions.float()
    # shape: (batch_size, num_labels)
    first = start_transitions + emissions[:, 0]
    end = end_transitions.expand(batch_size, num_labels)
    if num_words > 1:
        matrices = _transfer_matrices(transitions.float(), emissions, word_mask)
        prefix, suffix = _scan(matrices, _log_product), _scan(matrices, _log_product, reverse=True)
        # shape: (batch_size, num_words, num_labels)
        alpha = torch.cat([first.unsqueeze(1),
                           _log_product(first[:, None, None, :], prefix).squeeze(-2)], dim=1)
        beta = torch.cat([_log_product(suffix, end[:, None, :, None]).squeeze(-1),
                          end.unsqueeze(1)], dim=1)
    else:
        alpha, beta = first.unsqueeze(1), end.unsqueeze(1)
    marginals = (alpha + beta).softmax(dim=-1)
    return marginals.masked_fill(~word_mask.unsqueeze(-1), 0.0)


def crf_negative_log_likelihood(
    crf: CRF, emissions: torch.Tensor, labels: torch.LongTensor, word_mask: torch.Tensor
) -> torch.Tensor:
    """
    Per-example negative log-likelihood of `labels` under `crf`: pytorch-crf's `-crf(emissions, labels, mask,
    reduction="none")`, with the log partition from a tree of (logsumexp, +) matrix products (ceil(log2 num_words)
    steps) rather than a loop over words where that pays (`_scan_pays`).

    Args:
        crf: a batch-first `torchcrf.CRF`.
        emissions: `(batch_size, num_words, num_labels)`.
        labels: `(batch_size, num_words)` label ids; any value where `word_mask` is False.
        word_mask: `(batch_size, num_words)` bool, real words first, the first word of every row on.

    Returns:
        `(batch_size,)`.
    """
    if not _scan_pays(emissions, CPU_SCAN_MAX_LABELS["nll"]):
        return -crf(emissions, labels, mask=word_mask, reduction="none")
    return _negative_log_likelihood_scan(crf, emissions, labels, word_mask)


def _negative_log_likelihood_scan(
    crf: CRF, emissions: torch.Tensor, labels: torch.LongTensor, word_mask: torch.Tensor
) -> torch.Tensor:
    """`crf_negative_log_likelihood` by a tree of matrix products over positions, whatever the device."""
    batch_size, num_words, _ = emissions.shape
    labels = labels.masked_fill(~word_mask, 0)
    rows = torch.arange(batch_size, device=emissions.device)
    # Score of the gold path: start, emissions and transitions of the real words, end after the last one.
    gold_emissions = emissions.gather(2, labels.unsqueeze(2)).squeeze(2)  # shape: (batch_size, num_words)
    gold_transitions = crf.transitions[labels[:, :-1], labels[:, 1:]]  # shape: (batch_size, num_words - 1)
    last_label = labels[rows, word_mask.long().sum(dim=1) - 1]
    gold_score = (crf.start_transitions[labels[:, 0]] + crf.end_transitions[last_label]
                  + (gold_emissions * word_mask).sum(dim=1) + (gold_transitions * word_mask[:, 1:]).sum(dim=1))
    # log partition: first word, then the product of all transfer matrices, then the end transitions
    log_partition_start = crf.start_transitions + emissions[:, 0]  # shape: (batch_size, num_labels)
    if num_words > 1:
        product = _tree_product(_transfer_matrices(crf.transitions, emissions, word_mask))
        log_partition_start = _log_product(log_partition_start[:, None, :], product).squeeze(1)
    log_partition = (log_partition_start + crf.end_transitions).logsumexp(dim=1)
    return log_partition - gold_score


def _tree_product(matrices: torch.Tensor) -> torch.Tensor:
    """`M[:, 0] ... M[:, n - 1]` in the (logsumexp, +) semiring by pairwise products, `(batch_size, L, L)`; exact
    scores (no shift), as the log partition needs them."""
    while matrices.shape[1] > 1:
        if matrices.shape[1] % 2:
            identity = torch.full_like(matrices[:, :1], float("-inf"))
            identity[..., range(matrices.shape[-1]), range(matrices.shape[-1])] = 0.0
            matrices = torch.cat([matrices, identity], dim=1)
        matrices = _log_product(matrices[:, 0::2], matrices[:, 1::2])
    return matrices[:, 0]


class HSTLFamilyLayer(nn.Module):
    """Level 2: a dense layer shared by the tasks of one entity family."""

    def __init__(self, config: HSTLConfig):
        super().__init__()
        self.dense = nn.Linear(config.encoder_hidden_size, config.head_input_size)
        self.activation = {"gelu": nn.GELU(), "relu": nn.ReLU(), "tanh": nn.Tanh()}[config.family_activation]
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, word_states: torch.Tensor) -> torch.Tensor:
        # shape: (batch_size, num_words, head_input_size)
        return self.dropout(self.activation(self.dense(word_states)))


class HSTLTaskHead(nn.Module):
    """Level 3: a task's emission layer and its CRF over the task's labels."""

    def __init__(self, config: HSTLConfig, num_labels: int):
        super().__init__()
        self.emission = nn.Linear(config.head_input_size, num_labels)
        self.crf = CRF(num_labels, batch_first=True)

    def forward(self, word_states: torch.Tensor) -> torch.Tensor:
        # shape: (batch_size, num_words, num_labels)
        return self.emission(word_states)

    def negative_log_likelihood(self, emissions: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor):
        """Per-example CRF NLL, shape `(batch_size,)`; 0 for examples without words."""
        has_words = word_mask[:, 0]
        # pytorch-crf requires the first mask position on; an empty example gets a dummy word whose loss is dropped.
        crf_mask = word_mask.clone()
        crf_mask[:, 0] = True
        crf_labels = labels.masked_fill(~crf_mask | (labels == PAD_LABEL_ID), 0)
        negative_log_likelihood = crf_negative_log_likelihood(self.crf, emissions, crf_labels, crf_mask)
        return torch.where(has_words, negative_log_likelihood, torch.zeros_like(negative_log_likelihood))


AUTO_MAP = {
    "AutoConfig": "configuration_hstl.HSTLConfig",
    "AutoModel": "modeling_hstl.HSTLModel",
    "AutoModelForTokenClassification": "modeling_hstl.HSTLForTokenClassification",
}
"""config.json's `auto_map`: the Auto classes that load an HSTL folder (both models share one set of weights)."""


class HSTLPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for HSTL models.

    Its config names every Auto class (`AUTO_MAP`) and pipeline (`pipeline_hstl.custom_pipelines_entry`) of an HSTL
    folder, so that `save_pretrained` and `push_to_hub` write a folder that loads both ways, whichever model class
    saves it.
    """

    config_class = HSTLConfig
    # HSTLForTokenClassification holds an HSTLModel as `hstl`: transformers adds or strips this prefix per weight, so
    # one folder loads with AutoModel and AutoModelForTokenClassification alike.
    base_model_prefix = "hstl"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HSTLTaskHead"]

    def __init__(self, config: HSTLConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        config.auto_map = {**(getattr(config, "auto_map", None) or {}), **AUTO_MAP}
        config.custom_pipelines = custom_pipelines_entry()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The encoder is a PreTrainedModel of its own: transformers dispatches its modules to its own `_init_weights`,
        # so this only sees HSTL's layers, and only those `from_pretrained` did not load.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, CRF):
            bound = self.config.crf_init_range
            nn.init.uniform_(module.start_transitions, -bound, bound)
            nn.init.uniform_(module.end_transitions, -bound, bound)
            nn.init.uniform_(module.transitions, -bound, bound)


class HSTLModel(HSTLPreTrainedModel):
    """
    Hierarchical shared transfer learning tagger: a shared encoder, one layer per entity family and one emission layer +
    CRF per task. Words are represented by their first sub-token; the CRF runs over words.

    Inputs are batches as `windows_hstl.HSTLDataCollator` builds them: `input_ids` and `attention_mask` over sub-tokens
    (padded on either side), `word_start_positions` giving the sub-token index of each word's first sub-token (words
    left-aligned, `-1` at padding words), and the task of each example.
    """

    def __init__(self, config: HSTLConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder_config)
        self.word_dropout = nn.Dropout(config.hidden_dropout)
        self.family_layers = nn.ModuleDict(
            {self._family_key(family): HSTLFamilyLayer(config) for family in config.families}
            if config.use_family_layers
            else {}
        )
        self.heads = nn.ModuleDict(
            {task["name"]: HSTLTaskHead(config, len(task["labels"])) for task in config.tasks}
        )
        self.post_init()

    # ----------------------------------------------------------------------------------------------------------------
    # Building
    # ----------------------------------------------------------------------------------------------------------------

    @staticmethod
    def _family_key(family: str) -> str:
        # nn.ModuleDict keys may not contain "." (and "/" would be confusing in state-dict keys): "gene/protein" ->
        # "gene_protein". The config keeps the family's real name.
        return family.replace(".", "_").replace("/", "_")

    @classmethod
    def from_encoder(
        cls, encoder_name_or_path: str, tasks: list[dict], encoder_kwargs: dict | None = None, **config_kwargs
    ) -> "HSTLModel":
        """
        Builds an HSTL model around a pretrained encoder (a Hub id such as `"xlnet-base-cased"` or a local folder)
        with freshly initialised family layers and heads.

        Args:
            encoder_name_or_path: passed to `AutoModel.from_pretrained`.
            tasks: `[{"name", "labels", "family"}, ...]`, see [`HSTLConfig`].
            encoder_kwargs: extra keyword arguments for `AutoModel.from_pretrained` (e.g. `revision`).
            config_kwargs: other [`HSTLConfig`] arguments.
        """
        encoder = AutoModel.from_pretrained(encoder_name_or_path, **(encoder_kwargs or {}))
        config = HSTLConfig(encoder_config=encoder.config.to_dict(), tasks=tasks, **config_kwargs)
        model = cls(config)
        model.encoder.load_state_dict(encoder.state_dict())
        return model

    def add_task(self, name: str, labels: list[str], family: str) -> None:
        """Adds a freshly initialised head (and family layer, for a new family) for a new task."""
        self.config.add_task(name, labels, family)
        key = self._family_key(family)
        if self.config.use_family_layers and key not in self.family_layers:
            self.family_layers[key] = HSTLFamilyLayer(self.config).to(self.device)
            self.family_layers[key].apply(self._init_weights)
        self.heads[name] = HSTLTaskHead(self.config, len(labels)).to(self.device)
        self.heads[name].apply(self._init_weights)

    def keep_tasks(self, names: list[str]) -> None:
        """Drops every head (and family layer left without a task) except those of `names`, e.g. after fine-tuning."""
        for name in names:
            self.config.task_index(name)  # raises ValueError naming the known tasks
        self.config.tasks = [task for task in self.config.tasks if task["name"] in names]
        for name in list(self.heads):
            if name not in names:
                del self.heads[name]
        kept_families = {self._family_key(family) for family in self.config.families}
        for key in list(self.family_layers):
            if key not in kept_families:
                del self.family_layers[key]

    # ----------------------------------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------------------------------

    def _task_ids_tensor(self, task, task_ids, batch_size: int, device) -> torch.LongTensor:
        if (task is None) == (task_ids is None):
            raise ValueError("expected exactly one of `task` (a task name) or `task_ids` (a tensor of task ids)")
        if task is not None:
            return torch.full((batch_size,), self.config.task_index(task), dtype=torch.long, device=device)
        if task_ids.shape != (batch_size,):
            raise ValueError(f"task_ids: expected shape ({batch_size},), got {tuple(task_ids.shape)}")
        known = len(self.config.tasks)
        if bool(((task_ids < 0) | (task_ids >= known)).any()):
            raise ValueError(f"task_ids: expected ids in [0, {known}) for tasks {self.config.task_names}, got {task_ids}")
        return task_ids

    def encode_words(
        self,
        input_ids: torch.LongTensor,
        word_start_positions: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, torch.BoolTensor]:
        """
        Runs the shared encoder once and picks each word's first sub-token.

        Returns:
            word_states `(batch_size, num_words, encoder_hidden_size)` and word_mask `(batch_size, num_words)`.
        """
        if word_start_positions.dim() != 2 or word_start_positions.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"word_start_positions: expected shape (batch_size={input_ids.shape[0]}, num_words), "
                f"got {tuple(word_start_positions.shape)}"
            )
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        if self.config.encoder_config.model_type == "xlnet":
            encoder_inputs["use_mems"] = False  # memories are for language modelling over segments, not tagging
        # shape: (batch_size, seq_len, hidden)
        token_states = self.encoder(**encoder_inputs, return_dict=True).last_hidden_state
        word_mask = word_start_positions >= 0
        gather_index = word_start_positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, token_states.size(-1))
        # shape: (batch_size, num_words, hidden)
        word_states = token_states.gather(1, gather_index)
        return self.word_dropout(word_states), word_mask

    def _family_states(self, word_states: torch.Tensor, family: str) -> torch.Tensor:
        if not self.config.use_family_layers:
            return word_states
        return self.family_layers[self._family_key(family)](word_states)

    def forward(
        self,
        input_ids: torch.LongTensor,
        word_start_positions: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        task: str | None = None,
        task_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        decode: bool | None = None,
        **unused_batch_keys,
    ) -> HSTLTokenClassifierOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): sub-token ids, padded on either side.
            word_start_positions (`torch.LongTensor` of shape `(batch_size, num_words)`):
                index in `input_ids` of each word's first sub-token; words left-aligned, `-1` at padding words.
            attention_mask (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*): 1 at real sub-tokens.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*): segment ids.
            task (`str`, *optional*): the task of every example. Give either `task` or `task_ids`.
            task_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*): one task per example (mixed batches).
            labels (`torch.LongTensor` of shape `(batch_size, num_words)`, *optional*):
                label ids in each example's task, `-100` at padding words. The loss is returned only with labels.
            decode (`bool`, *optional*): run Viterbi decoding; defaults to `not self.training`.
            unused_batch_keys: other collator outputs (window metadata) are accepted and ignored, so that a whole
                batch can be passed as `model(**batch)`.
        """
        batch_size = input_ids.shape[0]
        task_ids = self._task_ids_tensor(task, task_ids, batch_size, input_ids.device)
        decode = (not self.training) if decode is None else decode
        word_states, word_mask = self.encode_words(input_ids, word_start_positions, attention_mask, token_type_ids)
        num_words = word_mask.shape[1]
        if labels is not None and labels.shape != word_mask.shape:
            raise ValueError(f"labels: expected shape {tuple(word_mask.shape)}, got {tuple(labels.shape)}")

        present_task_ids = task_ids.unique().tolist()
        max_num_labels = max(len(self.config.tasks[task_id]["labels"]) for task_id in present_task_ids)
        emissions = word_states.new_zeros(batch_size, num_words, max_num_labels)
        predictions = torch.full_like(word_mask, PAD_LABEL_ID, dtype=torch.long) if decode else None
        per_example_loss = word_states.new_zeros(batch_size) if labels is not None else None

        # A batch may mix tasks: run each task's family layer and head on its own rows only.
        for task_id in present_task_ids:
            task_config = self.config.tasks[task_id]
            rows = (task_ids == task_id).nonzero(as_tuple=True)[0]
            head = self.heads[task_config["name"]]
            task_emissions = head(self._family_states(word_states[rows], task_config["family"]))
            num_labels = task_emissions.shape[-1]
            padded = torch.full_like(emissions[rows], float("-inf"))
            padded[:, :, :num_labels] = task_emissions
            emissions = emissions.index_put((rows,), padded)
            if labels is not None:
                task_loss = head.negative_log_likelihood(task_emissions, labels[rows], word_mask[rows])
                per_example_loss = per_example_loss.index_put((rows,), task_loss)
            if decode:
                with torch.no_grad():
                    predictions[rows] = viterbi_decode(head.crf, task_emissions.detach(), word_mask[rows])
        # Padding words carry 0 rather than -inf so that sums over a batch stay finite.
        emissions = emissions.masked_fill(~word_mask.unsqueeze(-1), 0.0)

        loss = self._reduce_loss(per_example_loss, word_mask) if labels is not None else None
        return HSTLTokenClassifierOutput(
            loss=loss,
            per_example_loss=per_example_loss,
            emissions=emissions,
            predictions=predictions,
            word_mask=word_mask,
        )

    def _reduce_loss(self, per_example_loss: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        if self.config.loss_reduction == "sum":
            return per_example_loss.sum()
        if self.config.loss_reduction == "token_mean":
            return per_example_loss.sum() / word_mask.sum().clamp(min=1)
        return per_example_loss.mean()

    @torch.no_grad()
    def tag(
        self,
        input_ids: torch.LongTensor,
        word_start_positions: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        tasks: list[str] | None = None,
        return_marginals: bool = False,
        decode: bool = True,
        **unused_batch_keys,
    ) -> HSTLMultiTaskTaggingOutput:
        """
        Tags every example with several heads (default: all) from ONE encoder pass; each family layer also runs once.
        Unknown task names raise `ValueError` listing the known ones. `return_marginals=True` adds each head's CRF
        marginals (`crf_marginals`), the basis of mention confidences; without it they cost nothing. `decode=False`
        returns the emissions and word mask only, for [`HSTLModel.decode`] to decode several passes at once.
        """
        task_names = self.config.task_names if tasks is None else list(tasks)
        for name in task_names:
            self.config.task_index(name)
        word_states, word_mask = self.encode_words(input_ids, word_start_positions, attention_mask, token_type_ids)
        family_states: dict[str, torch.Tensor] = {}
        emissions = {}
        for name in task_names:
            family = self.config.task(name)["family"]
            if family not in family_states:
                family_states[family] = self._family_states(word_states, family)
            emissions[name] = self.heads[name](family_states[family])
        predictions, marginals = self.decode(emissions, word_mask, return_marginals) if decode else (None, None)
        return HSTLMultiTaskTaggingOutput(emissions=emissions, predictions=predictions, word_mask=word_mask,
                                          marginals=marginals)

    @torch.no_grad()
    def decode(
        self, emissions: dict[str, torch.Tensor], word_mask: torch.Tensor, return_marginals: bool = False
    ) -> tuple[dict[str, torch.LongTensor], dict[str, torch.FloatTensor] | None]:
        """
        The CRF half of [`HSTLModel.tag`]: each head's Viterbi labels and, with `return_marginals`, its CRF marginals,
        heads with equal label counts decoded together ([`viterbi_decode_heads`], [`crf_marginals_heads`]). A row's
        result does not depend on the other rows nor on padding words past its own, so the emissions of several
        encoder passes, padded to one width, decode at once: a loop over word positions runs once for all of them.

        Args:
            emissions: `{task: (batch_size, num_words, num_labels_of_head)}`.
            word_mask: `(batch_size, num_words)` bool, real words first.

        Returns:
            `({task: (batch_size, num_words) label ids, -100 at padding}, {task: (batch_size, num_words,
            num_labels_of_head) marginals} or None)`.
        """
        task_names = list(emissions)
        crfs = [self.heads[name].crf for name in task_names]
        head_emissions = [emissions[name] for name in task_names]
        predictions = dict(zip(task_names, viterbi_decode_heads(crfs, head_emissions, word_mask)))
        marginals = None
        if return_marginals:
            marginals = self.marginals(emissions, {name: word_mask for name in task_names})
        return predictions, marginals

    def marginals(
        self, emissions: dict[str, torch.Tensor], word_masks: dict[str, torch.Tensor]
    ) -> dict[str, torch.FloatTensor]:
        """
        Each head's CRF marginals over its own rows ([`crf_marginals_heads`], heads with equal label counts stacked):
        a caller that reads the marginals of some rows only (a mention's words) computes only those.

        Args:
            emissions: `{task: (rows_of_task, num_words, num_labels_of_head)}`.
            word_masks: `{task: (rows_of_task, num_words)}` bool, real words first.

        Returns:
            `{task: (rows_of_task, num_words, num_labels_of_head)}` float32 marginals, 0 at padding words.
        """
        task_names = list(emissions)
        crfs = [self.heads[name].crf for name in task_names]
        return dict(zip(task_names, crf_marginals_heads(crfs, [emissions[name] for name in task_names],
                                                        [word_masks[name] for name in task_names])))


@dataclass
class HSTLTokenClassificationOutput(ModelOutput):
    """
    Output of [`HSTLForTokenClassification.forward`]: transformers' token-classification view (per sub-token, over
    `config.id2label`) and HSTL's word-level outputs.

    Args:
        logits (`torch.FloatTensor` of shape `(batch_size, seq_len, config.num_labels)`):
            Log CRF marginals over `config.id2label` (the merged label space of the heads, over shared entity types).
            At each word's first sub-token, for each label: the log of the highest probability that a head's CRF
            gives the word that label (forward-backward over the whole input, transitions included; a head's labels
            that map to one shared label, as JNLPBA's B-DNA and B-protein both map to B-Gene, add up), `-inf` when no
            head applied has it; 0 at other sub-tokens. So `logits.argmax(-1)` at word starts is the max-marginal
            decoding, which agrees with the Viterbi decoding of `predictions` on nearly every word (they can differ
            where a head is unsure) and a run_ner-style evaluation that takes the argmax at first sub-tokens scores
            the CRF's words.
        predictions (`torch.LongTensor` of shape `(batch_size, seq_len)`):
            Label ids in `config.id2label` at each word's first sub-token, `-100` elsewhere: each head decoded by its
            own CRF, the heads' mentions merged by the "confidence" policy (`mentions_hstl.merge_mentions`), as
            `predict.py` and the pipeline merge them by default.
        word_start_positions (`torch.LongTensor` of shape `(batch_size, num_words)`):
            Sub-token index of each word's first sub-token; words left-aligned, `-1` at padding words.
        word_predictions (`torch.LongTensor` of shape `(batch_size, num_words)`):
            `predictions` per word, `-100` at padding words.
        task_predictions (`dict[str, torch.LongTensor]`):
            Task name -> `(batch_size, num_words)` label ids of that head's own labels (`config.task_id2label`),
            `-100` at padding words.
    """

    logits: torch.FloatTensor | None = None
    predictions: torch.LongTensor | None = None
    word_start_positions: torch.LongTensor | None = None
    word_predictions: torch.LongTensor | None = None
    task_predictions: dict[str, torch.LongTensor] | None = None


def word_start_positions_from(
    attention_mask: torch.Tensor, word_ids: torch.Tensor | None = None
) -> torch.LongTensor:
    """
    Word starts of a plain tokenizer's output, as `HSTLModel` takes them.

    Args:
        attention_mask: `(batch_size, seq_len)`, 1 at real sub-tokens (padding on either side).
        word_ids: `(batch_size, seq_len)`, optional: the tokenizer's `word_ids()` per row with `-1` (any negative
            value) for special tokens and padding. A word starts where its id differs from the previous sub-token's.
            Without it, every attended sub-token (special tokens included) is a word of its own.

    Returns:
        `(batch_size, max(1, num_words))`: each word's first sub-token index, words left-aligned, `-1` at padding.
    """
    if word_ids is None:
        start_mask = attention_mask.bool()
    else:
        if word_ids.shape != attention_mask.shape:
            raise ValueError(f"word_ids: expected shape {tuple(attention_mask.shape)} like input_ids, "
                             f"got {tuple(word_ids.shape)}")
        previous = torch.nn.functional.pad(word_ids[:, :-1], (1, 0), value=-1)
        start_mask = (word_ids >= 0) & (word_ids != previous) & attention_mask.bool()
    seq_len = start_mask.shape[1]
    num_words = start_mask.sum(dim=1)  # shape: (batch_size,)
    max_words = max(int(num_words.max()) if num_words.numel() else 0, 1)
    positions = torch.arange(seq_len, device=start_mask.device).expand_as(start_mask)
    # Word starts first, in order (keys are distinct, so the sort order is exact), then the rest.
    order = torch.where(start_mask, positions, positions + seq_len).argsort(dim=1)[:, :max_words]
    order = torch.nn.functional.pad(order, (0, max_words - order.shape[1]), value=-1)
    is_word = torch.arange(max_words, device=start_mask.device) < num_words.unsqueeze(1)
    return torch.where(is_word, order, torch.full_like(order, -1))


class HSTLForTokenClassification(HSTLPreTrainedModel):
    """
    The token-classification view of an HSTL model, as `AutoModelForTokenClassification` and the
    `"token-classification"` pipeline expect it: the same weights as [`HSTLModel`] (held as `self.hstl`), so one model
    folder loads with both classes.

    A multi-head model has no single label set, so this view uses the merged label space of `config.id2label`: `O`,
    then `B-<type>`, `I-<type>` for every shared entity type of any head (`config.entity_types`: `Protein` and `GENE`
    heads both give `Gene`, and heads that share a type share its labels). Every
    head tags the words from one encoder pass and is decoded by its own CRF; the heads' mentions are merged by the
    "confidence" policy, `predict.py`'s default (most confident mention first, by `mentions_hstl.mention_confidence`
    on the CRF marginals; ties to the longer mention, then to the head listed first in `config.tasks`; overlapping
    mentions dropped) and written back as IOB2 labels of the merged space. Pass `tasks` to use only some heads, in
    priority order.

    HSTL tags words, each read at its first sub-token, and `input_ids` alone do not say where words start: pass
    `word_ids` (the tokenizer's `word_ids()`, -1 at special tokens and padding) or `word_start_positions` as
    `HSTLModel` takes them; a call with neither raises `ValueError` rather than tag sub-word fragments as words.
    Inference only: training goes through `HSTLModel` (`train.py`, `finetune.py`).
    """

    def __init__(self, config: HSTLConfig):
        super().__init__(config)
        self.hstl = HSTLModel(config)
        self.post_init()

    def tag(self, *args, **kwargs) -> HSTLMultiTaskTaggingOutput:
        """[`HSTLModel.tag`]: every chosen head on one encoder pass (the `hstl-ner` pipeline's entry point)."""
        return self.hstl.tag(*args, **kwargs)

    @torch.no_grad()
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        word_ids: torch.LongTensor | None = None,
        word_start_positions: torch.LongTensor | None = None,
        tasks: list[str] | None = None,
        **unused_inputs,
    ) -> HSTLTokenClassificationOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): sub-token ids, padded on either side.
            attention_mask (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*): 1 at real sub-tokens.
            token_type_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*): segment ids.
            word_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*): word index of each sub-token,
                `-1` at special tokens and padding; see [`word_start_positions_from`].
            word_start_positions (`torch.LongTensor` of shape `(batch_size, num_words)`, *optional*): as
                [`HSTLModel.forward`] takes them; overrides `word_ids`.
            tasks (`list[str]`, *optional*): the heads to apply, in priority order (default: all, config order).
            unused_inputs: other tokenizer outputs (e.g. `special_tokens_mask`, `offset_mapping`) are ignored.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if word_start_positions is None:
            if word_ids is None:
                raise ValueError(
                    "word_ids: expected the tokenizer's word_ids() as a tensor (-1 at special tokens and padding) or "
                    "word_start_positions, got neither: HSTL labels words at their first sub-token, and input_ids "
                    "alone do not say where words start")
            word_start_positions = word_start_positions_from(attention_mask, word_ids)
        task_names = self.config.task_names if tasks is None else list(tasks)
        tagged = self.hstl.tag(input_ids, word_start_positions, attention_mask, token_type_ids, tasks=task_names,
                               return_marginals=True)
        word_logits = self._merged_log_marginals(tagged.marginals, tagged.word_mask)
        word_predictions = self._merged_predictions(tagged.predictions, tagged.marginals, tagged.word_mask)
        batch_size, seq_len = input_ids.shape
        # Word values go to their first sub-token; padding words (-1) are sent to an extra column that is cut off.
        scatter_index = torch.where(tagged.word_mask, word_start_positions, seq_len)
        logits = word_logits.new_zeros(batch_size, seq_len + 1, self.config.num_labels)
        logits.scatter_(1, scatter_index.unsqueeze(-1).expand_as(word_logits), word_logits)
        predictions = torch.full((batch_size, seq_len + 1), PAD_LABEL_ID, dtype=torch.long, device=input_ids.device)
        predictions.scatter_(1, scatter_index, word_predictions)
        return HSTLTokenClassificationOutput(
            logits=logits[:, :seq_len],
            predictions=predictions[:, :seq_len],
            word_start_positions=word_start_positions,
            word_predictions=word_predictions,
            task_predictions=tagged.predictions,
        )

    def _merged_log_marginals(self, marginals: dict[str, torch.Tensor], word_mask: torch.Tensor) -> torch.Tensor:
        """`(batch_size, num_words, num_labels)`: per merged label, the log of the highest CRF marginal any head gives
        it (a head's labels of one merged label summed first)."""
        first = next(iter(marginals.values()))
        merged = first.new_zeros((*first.shape[:2], self.config.num_labels))
        for name, head_marginals in marginals.items():
            merged_ids = torch.tensor([self.config.label2id[label] for label in self.config.entity_labels(name)],
                                      device=merged.device).expand_as(head_marginals)
            # shape: (batch_size, num_words, num_labels): this head's probability of each merged label
            head_probabilities = first.new_zeros(merged.shape).scatter_add(-1, merged_ids, head_marginals.float())
            merged = torch.maximum(merged, head_probabilities)
        return merged.log().masked_fill(~word_mask.unsqueeze(-1), 0.0)

    def _merged_predictions(self, predictions: dict[str, torch.Tensor], marginals: dict[str, torch.Tensor],
                            word_mask: torch.Tensor) -> torch.LongTensor:
        """`(batch_size, num_words)` merged-space label ids: the heads' mentions under the "confidence" policy."""
        merged = torch.full_like(word_mask, PAD_LABEL_ID, dtype=torch.long)
        head_labels = {name: self.config.task(name)["labels"] for name in predictions}
        for row, num_words in enumerate(word_mask.sum(dim=1).tolist()):
            labels_by_task = {
                name: [head_labels[name][label_id] for label_id in head_predictions[row, :num_words].tolist()]
                for name, head_predictions in predictions.items()
            }
            scores_by_task = {name: word_marginals(head_labels[name], marginals[name][row, :num_words].tolist())
                              for name in predictions}
            mentions = merge_mentions(labels_by_task, "confidence", scores_by_task,
                                      entity_type_of=self.config.entity_types)
            labels = mentions_to_labels(mentions, num_words)
            merged[row, :num_words] = torch.tensor([self.config.label2id[label] for label in labels], dtype=torch.long)
        return merged


# `save_pretrained` then writes `auto_map` into config.json and copies the remote-code files beside the weights, so that
# `AutoModel.from_pretrained(folder, trust_remote_code=True)` works without the hstl package. (`hstl.remote_code`
# completes a model folder with both entries, the pipeline and its file.)
HSTLModel.register_for_auto_class("AutoModel")
HSTLForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = [
    "HSTLModel",
    "HSTLForTokenClassification",
    "HSTLTokenClassificationOutput",
    "word_start_positions_from",
    "HSTLPreTrainedModel",
    "HSTLTokenClassifierOutput",
    "HSTLMultiTaskTaggingOutput",
    "viterbi_decode",
    "viterbi_decode_heads",
    "crf_marginals",
    "crf_marginals_heads",
]
