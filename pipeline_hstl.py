# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""The HSTL pipeline: raw text in, entity spans from one or several HSTL heads out.

    from transformers import pipeline
    ner = pipeline("token-classification", model="user/hstl-model", trust_remote_code=True)  # or a local folder
    ner("Cisplatin-induced nephrotoxicity in rats.", tasks=["BC5CDR-chem"])
    # [{"entity_group": "Chemical", "score": 0.97, "word": "Cisplatin", "start": 0, "end": 9, "task": "BC5CDR-chem"}]

A model folder registers this class for two tasks in config.json's `custom_pipelines`: `"token-classification"`
(loading the model with `AutoModelForTokenClassification`) and `"hstl-ner"` (with `AutoModel`); both behave the same.
As the folder names two tasks, `pipeline(...)` needs the task named.

Text is split into sentences and words, sentences are cut into overlapping encoder windows of
`config.window_max_length` sub-tokens sharing `config.window_overlap` (the training run's settings; nothing is
truncated), every chosen head tags every word from ONE encoder pass per batch of windows, each head's B-/I- labels
become mentions by conlleval's chunk rules, and the heads' mentions are merged by the policy `merge` of `predict.py`:
all of it by the sibling files `text_hstl.py`, `windows_hstl.py` and `mentions_hstl.py`, the code `predict.py` uses
too.

An entity's `score` is its confidence under the head's CRF (`mentions_hstl.mention_confidence`): the smallest
CRF marginal, over its words, of the label the mention gives each word, and of "not I-<type>" at the word after it;
with `aggregation_strategy="none"`, a word's `score` is the CRF marginal of its label. Marginals are computed per
window by forward-backward and stitched as labels are (each word's from the window that owns it), exactly as
`predict.py` does, so both give the same scores.

This file is Hub remote code, shipped in the model folder with its `*_hstl.py` siblings: it imports
only torch, transformers and them. In-process, importing
this module registers the `hstl-ner` task: `pipeline("hstl-ner", model=model, tokenizer=tokenizer)`.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

try:
    from .entity_types_hstl import keep_entity_types
    from .mentions_hstl import MERGE_POLICIES, merge_mentions, word_marginals
    from .text_hstl import split_sentences, tokenize
    from .windows_hstl import HSTLDataCollator, encode_sentences, length_sorted_order, stitch_words
except ImportError:
    from entity_types_hstl import keep_entity_types
    from mentions_hstl import MERGE_POLICIES, merge_mentions, word_marginals
    from text_hstl import split_sentences, tokenize
    from windows_hstl import HSTLDataCollator, encode_sentences, length_sorted_order, stitch_words


PIPELINE_TASK = "hstl-ner"
DEFAULT_WINDOW_BATCH_SIZE = 32
AGGREGATION_STRATEGIES = ("simple", "first", "none")
"""Accepted `aggregation_strategy` values. HSTL labels whole words (each read at its first sub-token) with a CRF, so
"simple" and "first" are the same: one dict per mention. "none" gives one dict per word of each mention, with
`entity` (its IOB2 label, e.g. "B-Chemical") instead of `entity_group`. "average" and "max" pool sub-token scores,
which HSTL does not have: they are refused."""

Word = tuple[str, int, int]
"""`(text, start, end)`: a word and its character offsets in the input text."""


class HSTLNERPipeline(Pipeline):
    """
    Named entity recognition with an HSTL model: one list of entity dicts per input text.

    Call arguments (also accepted by `pipeline(...)` as defaults):
        tasks (`list[str]`, *optional*): the heads to apply, in priority order for ties of `merge`; default all,
            in the model's order. Unknown names raise `ValueError` listing the model's heads.
        entity_types (`list[str]`, *optional*): keep only mentions of these shared entity types (`config.entity_types`
            maps each head's label types to them), as `predict.py --entity_types`: only the heads (among `tasks`)
            that produce one of them run, and a type that none produces raises `ValueError` listing those produced.
        merge (`str`, *optional*, defaults to `"confidence"`): how the heads' mentions combine, as `predict.py
            --merge` (`mentions_hstl.MERGE_POLICIES`): `"confidence"` keeps the most confident of overlapping
            mentions (ties: the longer, then the head listed first), `"longest"` the longest (ties: the head listed
            first), `"none"` keeps every head's mentions, overlaps included.
        aggregation_strategy (`str`, *optional*, defaults to `"simple"`): see `AGGREGATION_STRATEGIES`.
        ignore_labels (`list[str]`, *optional*, defaults to `["O"]`): entities whose `entity_group` (or, with
            `aggregation_strategy="none"`, whose `entity`) is listed are left out.
        window_batch_size (`int`, *optional*, defaults to 32): windows per forward pass. The pipeline's own
            `batch_size` must stay 1: one text's windows are batched already.

    Windows come from the model's config (`window_max_length`, `window_overlap`). Each entity is `{"entity_group",
    "score", "word", "start", "end", "task"}` (offsets in characters, end exclusive), sorted by start, end, then head
    order; `entity_group` (and the type in `entity`) is the shared entity type of `config.entity_types` ("Gene" for a
    BioNLP09 "Protein"), the type of `config.id2label`.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __call__(self, inputs: str | list[str], **kwargs: Any):
        batch_size = kwargs.get("batch_size")
        if batch_size not in (None, 1):
            raise ValueError(f"batch_size: expected 1 (a text's windows are batched by window_batch_size), "
                             f"got {batch_size}")
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, tasks: list[str] | None = None, merge: str | None = None,
                             aggregation_strategy: str | None = None, ignore_labels: list[str] | None = None,
                             window_batch_size: int | None = None, entity_types: list[str] | None = None,
                             **unknown: Any):
        if unknown:  # a misspelt `task=` would otherwise silently tag with every head
            raise ValueError(f"expected the arguments tasks, entity_types, merge, aggregation_strategy, "
                             f"ignore_labels, window_batch_size, got {sorted(unknown)}")
        forward_params, postprocess_params = {}, {}
        if tasks is not None:
            tasks = [tasks] if isinstance(tasks, str) else list(tasks)
            for name in tasks:
                self.model.config.task_index(name)  # ValueError listing the known heads
            forward_params["tasks"] = tasks
        if entity_types is not None:
            entity_types = [entity_types] if isinstance(entity_types, str) else list(entity_types)
            try:
                forward_params["tasks"] = self.model.config.tasks_producing(entity_types, tasks)
            except ValueError as error:
                raise ValueError(f"entity_types: {error}") from None
            postprocess_params["entity_types"] = entity_types
        if window_batch_size is not None:
            if window_batch_size < 1:
                raise ValueError(f"window_batch_size: expected >= 1, got {window_batch_size}")
            forward_params["window_batch_size"] = window_batch_size
        if merge is not None:
            if merge not in MERGE_POLICIES:
                raise ValueError(f"merge: expected one of {list(MERGE_POLICIES)}, got {merge!r}")
            postprocess_params["merge"] = merge
        if aggregation_strategy is not None:
            aggregation_strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if aggregation_strategy not in AGGREGATION_STRATEGIES:
                raise ValueError(f"aggregation_strategy: expected one of {list(AGGREGATION_STRATEGIES)} (HSTL labels "
                                 f"whole words with a CRF; there are no sub-token scores to pool), got "
                                 f"{aggregation_strategy!r}")
            postprocess_params["aggregation_strategy"] = aggregation_strategy
        if ignore_labels is not None:
            postprocess_params["ignore_labels"] = list(ignore_labels)
        return {}, forward_params, postprocess_params

    def preprocess(self, text: str) -> dict[str, Any]:
        """Sentences and words with offsets, and the unpadded encoder windows of every sentence."""
        if not isinstance(text, str):
            raise ValueError(f"inputs: expected a string (or a list of strings), got {type(text).__name__}")
        sentences = words_of_sentences(text)
        rows = encode_sentences(self.tokenizer, [[word for word, _, _ in sentence] for sentence in sentences],
                                max_length=self.model.config.window_max_length,
                                overlap=self.model.config.window_overlap)
        windows = [{key: values[index] for key, values in rows.items()} for index in range(len(rows["input_ids"]))]
        return {"text": text, "sentences": sentences, "windows": windows}

    def _forward(self, model_inputs: dict[str, Any], tasks: list[str] | None = None,
                 window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE) -> dict[str, Any]:
        """Per head and window: the label id and the CRF marginals (one row per label) of each window word."""
        task_names = list(tasks) if tasks is not None else list(self.model.config.task_names)
        windows = model_inputs["windows"]
        window_labels = {name: [None] * len(windows) for name in task_names}
        window_marginals = {name: [None] * len(windows) for name in task_names}
        collator = HSTLDataCollator(self.tokenizer)
        # Longest first, so that each batch carries little padding.
        order = length_sorted_order([len(window["input_ids"]) for window in windows])
        for batch_start in range(0, len(order), window_batch_size):
            batch_indices = order[batch_start:batch_start + window_batch_size]
            batch = self._ensure_tensor_on_device(collator([windows[index] for index in batch_indices]), self.device)
            output = self.model.tag(batch["input_ids"], batch["word_start_positions"], batch["attention_mask"],
                                    batch.get("token_type_ids"), tasks=task_names, return_marginals=True)
            for name in task_names:
                labels, marginals = output.predictions[name].tolist(), output.marginals[name].tolist()
                for row, index in enumerate(batch_indices):
                    num_words = len(windows[index]["word_start_positions"])
                    window_labels[name][index] = labels[row][:num_words]
                    window_marginals[name][index] = marginals[row][:num_words]
        return {**model_inputs, "task_names": task_names, "window_labels": window_labels,
                "window_marginals": window_marginals}

    def postprocess(self, model_outputs: dict[str, Any], merge: str = "confidence",
                    aggregation_strategy: str = "simple", ignore_labels: list[str] | None = None,
                    entity_types: list[str] | None = None) -> list[dict[str, Any]]:
        """Entity dicts of every sentence, in text order."""
        entity_type_of = self.model.config.entity_types
        ignore_labels = ["O"] if ignore_labels is None else ignore_labels
        text, sentences, windows = model_outputs["text"], model_outputs["sentences"], model_outputs["windows"]
        num_words = [len(sentence) for sentence in sentences]
        labels_by_task, marginals_by_task = {}, {}
        for name in model_outputs["task_names"]:
            head_labels = self.model.config.task(name)["labels"]
            labels_by_task[name] = [[head_labels[label_id] for label_id in sentence] for sentence in
                                    stitch_words(model_outputs["window_labels"][name], windows, num_words)]
            if entity_types is not None:  # before merging, as predict.py --entity_types
                labels_by_task[name] = [keep_entity_types(sentence, entity_type_of[name], entity_types)
                                        for sentence in labels_by_task[name]]
            marginals_by_task[name] = [word_marginals(head_labels, sentence) for sentence in
                                       stitch_words(model_outputs["window_marginals"][name], windows, num_words)]
        entities = []
        for index, sentence in enumerate(sentences):
            sentence_labels = {name: labels[index] for name, labels in labels_by_task.items()}
            sentence_marginals = {name: marginals[index] for name, marginals in marginals_by_task.items()}
            for mention in merge_mentions(sentence_labels, merge, sentence_marginals,
                                          entity_type_of=entity_type_of):
                entities.extend(mention_entities(text, sentence, mention, sentence_labels[mention.task],
                                                 sentence_marginals[mention.task], aggregation_strategy))
        return [entity for entity in entities
                if entity.get("entity_group") not in ignore_labels and entity.get("entity") not in ignore_labels]


def mention_entities(text: str, sentence: list[Word], mention, labels: list[str], marginals: list[dict[str, float]],
                     aggregation_strategy: str) -> list[dict[str, Any]]:
    """The entity dict of one mention (`aggregation_strategy` "simple"/"first", scored by the mention's confidence),
    or one dict per word ("none", scored by the CRF marginal of the word's label)."""
    if aggregation_strategy == "none":
        return [{"entity": f"{'B' if position == mention.start else 'I'}-{mention.type}",
                 "score": marginals[position][labels[position]], "word": word, "start": start, "end": end,
                 "task": mention.task}
                for position, (word, start, end) in zip(range(mention.start, mention.end),
                                                        sentence[mention.start:mention.end])]
    start, end = sentence[mention.start][1], sentence[mention.end - 1][2]
    return [{"entity_group": mention.type, "score": mention.score, "word": text[start:end],
             "start": start, "end": end, "task": mention.task}]


def words_of_sentences(text: str) -> list[list[Word]]:
    """The words of every sentence of `text`, with character offsets into `text` (the rules of `text.py`)."""
    return [tokenize(text[start:end], start) for start, end in split_sentences(text)]


def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` value of config.json: `pipeline("token-classification", model=...,
    trust_remote_code=True)` and `pipeline("hstl-ner", ...)` both find this class."""
    impl = f"{__name__.split('.')[-1]}.{HSTLNERPipeline.__name__}"
    return {"token-classification": {"impl": impl, "pt": ["AutoModelForTokenClassification"], "type": "text"},
            PIPELINE_TASK: {"impl": impl, "pt": ["AutoModel"], "type": "text"}}


# In-process use (`pipeline("hstl-ner", model=model, tokenizer=tokenizer)`) needs the task registered; the remote copy
# of this file registers itself again when the Hub loads it, which is harmless.
PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=HSTLNERPipeline, pt_model=AutoModel, type="text")
