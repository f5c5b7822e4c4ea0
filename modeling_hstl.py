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

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

# Relative imports when loaded from a model folder as remote code, top-level ones from the installed package;
# transformers' import check skips `try` blocks.
try:
    from .configuration_hstl import HSTLConfig
    from .labels_hstl import PAD_LABEL_ID
    from .mentions_hstl import mentions_to_labels, merge_mentions, word_marginals
except ImportError:
    from configuration_hstl import HSTLConfig
    from labels_hstl import PAD_LABEL_ID
    from mentions_hstl import mentions_to_labels, merge_mentions, word_marginals


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
    Marginal probability of every label at every word under `crf` (forward-backward in log space, fully batched):
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
    crfs: list[CRF], emissions: list[torch.Tensor], word_mask: torch.Tensor
) -> list[torch.FloatTensor]:
    """[`crf_marginals`] of several heads on the same words, heads with equal label counts stacked into one batch as
    [`viterbi_decode_heads`] does. Returns, per head, `(batch_size, num_words, num_labels_of_head)`."""
    return _per_head_stacked(_marginals, crfs, emissions, word_mask)


def _per_head_stacked(crf_function, crfs: list[CRF], emissions: list[torch.Tensor], word_mask: torch.Tensor) -> list:
    """`crf_function(start, end, transitions, emissions, word_mask)` (`_viterbi` or `_marginals`) of each head, heads
    with the same number of labels run together as one stacked batch with per-row transition scores."""
    batch_size = word_mask.shape[0]
    heads_by_label_count: dict[int, list[int]] = {}
    for head_index, head_emissions in enumerate(emissions):
        heads_by_label_count.setdefault(head_emissions.shape[-1], []).append(head_index)
    results: list[torch.Tensor | None] = [None] * len(crfs)
    for head_indices in heads_by_label_count.values():
        group = [crfs[index] for index in head_indices]
        # Row h * batch_size + b is example b under head h; each row gets its own head's transition scores.
        stacked = crf_function(
            torch.stack([crf.start_transitions for crf in group]).repeat_interleave(batch_size, dim=0),
            torch.stack([crf.end_transitions for crf in group]).repeat_interleave(batch_size, dim=0),
            torch.stack([crf.transitions for crf in group]).repeat_interleave(batch_size, dim=0),
            torch.cat([emissions[index] for index in head_indices]),
            word_mask.repeat(len(group), 1),
        )
        for index, head_result in zip(head_indices, stacked.split(batch_size)):
            results[index] = head_result
    return results


def _viterbi(
    start_transitions: torch.Tensor,
    end_transitions: torch.Tensor,
    transitions: torch.Tensor,
    emissions: torch.Tensor,
    word_mask: torch.Tensor,
) -> torch.LongTensor:
    """
    Batched Viterbi. Transition scores are shared, `(num_labels,)` / `(num_labels, num_labels)`, or per example,
    `(batch_size, num_labels)` / `(batch_size, num_labels, num_labels)`; the arithmetic is the same either way.
    """
    batch_size, num_words, _ = emissions.shape
    predictions = torch.full((batch_size, num_words), PAD_LABEL_ID, dtype=torch.long, device=emissions.device)
    if num_words == 0:
        return predictions
    # shape: (batch_size, num_labels): best score of a path ending in each label
    score = start_transitions + emissions[:, 0]
    backpointers = []
    for position in range(1, num_words):
        # shape: (batch_size, num_labels_from, num_labels_to)
        candidate = score.unsqueeze(2) + transitions + emissions[:, position].unsqueeze(1)
        best_score, best_previous = candidate.max(dim=1)
        score = torch.where(word_mask[:, position].unsqueeze(1), best_score, score)
        backpointers.append(best_previous)
    score = score + end_transitions
    last_position = word_mask.long().sum(dim=1) - 1  # shape: (batch_size,); -1 for empty rows
    current_label = score.argmax(dim=1)
    for position in range(num_words - 1, -1, -1):
        is_real = position <= last_position
        predictions[:, position] = torch.where(is_real, current_label, predictions[:, position])
        if position > 0:
            previous_label = backpointers[position - 1].gather(1, current_label.unsqueeze(1)).squeeze(1)
            # Follow the back-pointer only inside the sentence: past its end the pointers are stale copies.
            current_label = torch.where(position <= last_position, previous_label, current_label)
    return predictions


def _marginals(
    start_transitions: torch.Tensor,
    end_transitions: torch.Tensor,
    transitions: torch.Tensor,
    emissions: torch.Tensor,
    word_mask: torch.Tensor,
) -> torch.FloatTensor:
    """
    Batched forward-backward in log space (float32, whatever the emissions' dtype). Transition scores are shared or
    per example, as in `_viterbi`.
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
    alphas = [start_transitions + emissions[:, 0]]
    for position in range(1, num_words):
        # shape: (batch_size, num_labels_from, num_labels_to)
        step = alphas[-1].unsqueeze(2) + transitions + emissions[:, position].unsqueeze(1)
        alphas.append(torch.where(word_mask[:, position].unsqueeze(1), step.logsumexp(dim=1), alphas[-1]))
    # beta[w][b, i]: log-sum of the scores of all label suffixes after label i at word w, end transition included.
    # At and past a row's last word it is the end transition alone (word_mask is left-aligned).
    end_scores = end_transitions.expand(batch_size, num_labels)
    betas = [end_scores]
    for position in range(num_words - 2, -1, -1):
        step = transitions + (emissions[:, position + 1] + betas[-1]).unsqueeze(1)
        betas.append(torch.where(word_mask[:, position + 1].unsqueeze(1), step.logsumexp(dim=2), end_scores))
    # shape: (batch_size, num_words, num_labels)
    alpha, beta = torch.stack(alphas, dim=1), torch.stack(betas[::-1], dim=1)
    log_partition = (alphas[-1] + end_transitions).logsumexp(dim=1)  # shape: (batch_size,)
    marginals = (alpha + beta - log_partition[:, None, None]).exp().clamp(0.0, 1.0)
    return marginals.masked_fill(~word_mask.unsqueeze(-1), 0.0)


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
        log_likelihood = self.crf(emissions, crf_labels, mask=crf_mask, reduction="none")
        return torch.where(has_words, -log_likelihood, torch.zeros_like(log_likelihood))


class HSTLPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for HSTL models."""

    config_class = HSTLConfig
    # HSTLForTokenClassification holds an HSTLModel as `hstl`: transformers adds or strips this prefix per weight, so
    # one folder loads with AutoModel and AutoModelForTokenClassification alike.
    base_model_prefix = "hstl"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HSTLTaskHead"]

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
        **unused_batch_keys,
    ) -> HSTLMultiTaskTaggingOutput:
        """
        Tags every example with several heads (default: all) from ONE encoder pass; each family layer also runs once.
        Unknown task names raise `ValueError` listing the known ones. `return_marginals=True` adds each head's CRF
        marginals (`crf_marginals`), the basis of mention confidences; without it they cost nothing.
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
        crfs = [self.heads[name].crf for name in task_names]
        decoded = viterbi_decode_heads(crfs, [emissions[name] for name in task_names], word_mask)
        predictions = dict(zip(task_names, decoded))
        marginals = None
        if return_marginals:
            marginals = dict(zip(task_names, crf_marginals_heads(crfs, [emissions[name] for name in task_names],
                                                                 word_mask)))
        return HSTLMultiTaskTaggingOutput(emissions=emissions, predictions=predictions, word_mask=word_mask,
                                          marginals=marginals)


@dataclass
class HSTLTokenClassificationOutput(ModelOutput):
    """
    Output of [`HSTLForTokenClassification.forward`]: transformers' token-classification view (per sub-token, over
    `config.id2label`) and HSTL's word-level outputs.

    Args:
        logits (`torch.FloatTensor` of shape `(batch_size, seq_len, config.num_labels)`):
            Scores over `config.id2label` (the merged label space of the heads, over shared entity types). At each
            word's first sub-token: for each label, the highest log-probability that a head gives a label of its own
            that is this label once its type is mapped to the shared entity type (`config.entity_labels`; log-softmax
            of the head's emission scores; `-inf` when no head applied has it); 0 at other sub-tokens. These are
            scores before the CRF: their argmax ignores the label transitions, `predictions` holds the CRF decoding.
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

    It accepts a plain tokenizer's output, `model(**tokenizer(text, return_tensors="pt"))`: without `word_ids` every
    attended sub-token (special tokens included) counts as a word; pass `word_ids` (the tokenizer's `word_ids()`, -1
    at special tokens) to have each word read at its first sub-token as in training, or `word_start_positions` as
    `HSTLModel` takes them. Inference only: training goes through `HSTLModel` (`train.py`, `finetune.py`).
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
            word_start_positions = word_start_positions_from(attention_mask, word_ids)
        task_names = self.config.task_names if tasks is None else list(tasks)
        tagged = self.hstl.tag(input_ids, word_start_positions, attention_mask, token_type_ids, tasks=task_names,
                               return_marginals=True)
        word_logits = self._merged_log_probabilities(tagged.emissions, tagged.word_mask)
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

    def _merged_log_probabilities(self, emissions: dict[str, torch.Tensor], word_mask: torch.Tensor) -> torch.Tensor:
        """`(batch_size, num_words, num_labels)`: per merged label, the best log-probability any head gives it."""
        first = next(iter(emissions.values()))
        merged = first.new_full((*first.shape[:2], self.config.num_labels), float("-inf"))
        for name, head_emissions in emissions.items():
            # Several label types of one head may share an entity type (JNLPBA's B-DNA and B-protein are both B-Gene):
            # scatter_reduce takes the best of them.
            merged_ids = torch.tensor([self.config.label2id[label] for label in self.config.entity_labels(name)],
                                      device=merged.device).expand_as(head_emissions)
            merged = merged.scatter_reduce(-1, merged_ids, head_emissions.float().log_softmax(-1), reduce="amax")
        return merged.masked_fill(~word_mask.unsqueeze(-1), 0.0)

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
