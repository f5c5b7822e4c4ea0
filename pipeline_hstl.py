# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""The `hstl-ner` pipeline: raw text in, entity spans from one or several HSTL heads out.

    from transformers import pipeline
    ner = pipeline(model="user/hstl-model", trust_remote_code=True)    # or a local model folder
    ner("Cisplatin-induced nephrotoxicity in rats.", tasks=["BC5CDR-chem"])
    # [{"entity_group": "Chemical", "score": 0.97, "word": "Cisplatin", "start": 0, "end": 9, "task": "BC5CDR-chem"}]

Text is split into sentences and words, sentences are cut into overlapping encoder windows (nothing is truncated),
every chosen head tags every word from ONE encoder pass per batch of windows, and each head's B-/I- labels become
spans by conlleval's chunk rules: all of it by `processing_hstl.py`, the code `predict.py` uses too.

An entity's `score` is the mean, over its words, of the softmax probability that the head's emission scores give to
the label the CRF chose: a confidence hint like the token-classification pipeline's, not a CRF marginal.

This file is Hub remote code, shipped in the model folder with its siblings `modeling_hstl.py`,
`configuration_hstl.py` and `processing_hstl.py`: it imports only torch, transformers and them.
`publish.py` puts them there and writes `custom_pipelines` into config.json. In-process, importing this module
registers the task: `pipeline("hstl-ner", model=model, tokenizer=tokenizer)`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

try:
    from .processing_hstl import (
        HSTLDataCollator, encode_sentences, extract_chunks, split_sentences, stitch_predictions, tokenize,
    )
except ImportError:
    from processing_hstl import (
        HSTLDataCollator, encode_sentences, extract_chunks, split_sentences, stitch_predictions, tokenize,
    )


PIPELINE_TASK = "hstl-ner"
DEFAULT_MAX_LENGTH = 128
DEFAULT_OVERLAP = 16
DEFAULT_WINDOW_BATCH_SIZE = 32

Word = tuple[str, int, int]
"""`(text, start, end)`: a word and its character offsets in the input text."""


class HSTLNERPipeline(Pipeline):
    """
    Named entity recognition with an HSTL model: one list of entity dicts per input text.

    Call arguments (also accepted by `pipeline(...)` as defaults):
        tasks (`list[str]`, *optional*): the heads to apply; default all. Unknown names raise `ValueError` listing
            the model's heads.
        max_length (`int`, *optional*): sub-tokens per encoder window, special tokens included. Defaults to the
            `window_max_length` that publishing writes into config.json (the training run's `max_length`), else 128.
        overlap (`int`, *optional*): sub-tokens of context shared by the windows of a long sentence. Defaults to the
            config's `window_overlap` (the training run's), else 16.
        window_batch_size (`int`, *optional*, defaults to 32): windows per forward pass. The pipeline's own
            `batch_size` must stay 1: one text's windows are batched already.

    Each entity is `{"entity_group", "score", "word", "start", "end", "task"}`, sorted by start, end, then head order.
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

    def _sanitize_parameters(self, tasks: list[str] | None = None, max_length: int | None = None,
                             overlap: int | None = None, window_batch_size: int | None = None, **unknown: Any):
        if unknown:  # a misspelt `task=` would otherwise silently tag with every head
            raise ValueError(f"expected the arguments tasks, max_length, overlap, window_batch_size, got "
                             f"{sorted(unknown)}")
        preprocess_params, forward_params = {}, {}
        if max_length is not None:
            preprocess_params["max_length"] = max_length
        if overlap is not None:
            preprocess_params["overlap"] = overlap
        if tasks is not None:
            if isinstance(tasks, str):
                tasks = [tasks]
            for name in tasks:
                self.model.config.task_index(name)  # ValueError listing the known heads
            forward_params["tasks"] = list(tasks)
        if window_batch_size is not None:
            if window_batch_size < 1:
                raise ValueError(f"window_batch_size: expected >= 1, got {window_batch_size}")
            forward_params["window_batch_size"] = window_batch_size
        return preprocess_params, forward_params, {}

    def preprocess(self, text: str, max_length: int | None = None, overlap: int | None = None) -> dict[str, Any]:
        """Sentences and words with offsets, and the unpadded encoder windows of every sentence."""
        if not isinstance(text, str):
            raise ValueError(f"inputs: expected a string (or a list of strings), got {type(text).__name__}")
        # The windows the model was trained on, as predict.py uses them (it reads them from run_config.yaml).
        if max_length is None:
            max_length = getattr(self.model.config, "window_max_length", None) or DEFAULT_MAX_LENGTH
        if overlap is None:
            overlap = getattr(self.model.config, "window_overlap", None)
            overlap = DEFAULT_OVERLAP if overlap is None else overlap
        sentences = words_of_sentences(text)
        rows = encode_sentences(self.tokenizer, [[word for word, _, _ in sentence] for sentence in sentences],
                                max_length=max_length, overlap=overlap)
        windows = [{key: values[index] for key, values in rows.items()} for index in range(len(rows["input_ids"]))]
        return {"text": text, "sentences": sentences, "windows": windows}

    def _forward(self, model_inputs: dict[str, Any], tasks: list[str] | None = None,
                 window_batch_size: int = DEFAULT_WINDOW_BATCH_SIZE) -> dict[str, Any]:
        """Per head and window: the label id and its probability for each window word."""
        task_names = list(tasks) if tasks is not None else list(self.model.config.task_names)
        windows = model_inputs["windows"]
        window_labels = {name: [None] * len(windows) for name in task_names}
        window_scores = {name: [None] * len(windows) for name in task_names}
        collator = HSTLDataCollator(self.tokenizer)
        # Longest first, so that each batch carries little padding.
        order = sorted(range(len(windows)), key=lambda index: -len(windows[index]["input_ids"]))
        for batch_start in range(0, len(order), window_batch_size):
            batch_indices = order[batch_start:batch_start + window_batch_size]
            batch = self._ensure_tensor_on_device(collator([windows[index] for index in batch_indices]), self.device)
            output = self.model.tag(batch["input_ids"], batch["word_start_positions"], batch["attention_mask"],
                                    batch.get("token_type_ids"), tasks=task_names)
            for name in task_names:
                labels, scores = chosen_label_probabilities(output.emissions[name], output.predictions[name])
                for row, index in enumerate(batch_indices):
                    num_words = len(windows[index]["word_start_positions"])
                    window_labels[name][index] = labels[row][:num_words]
                    window_scores[name][index] = scores[row][:num_words]
        return {**model_inputs, "task_names": task_names, "window_labels": window_labels,
                "window_scores": window_scores}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        """Entity dicts of every head, in text order."""
        text, sentences, windows = model_outputs["text"], model_outputs["sentences"], model_outputs["windows"]
        entities = []
        for task_order, name in enumerate(model_outputs["task_names"]):
            id2label = self.model.config.task_id2label(name)
            labels, scores = stitch_words(model_outputs["window_labels"][name], model_outputs["window_scores"][name],
                                          windows, [len(sentence) for sentence in sentences])
            for sentence, sentence_labels, sentence_scores in zip(sentences, labels, scores):
                label_names = [id2label[label_id] for label_id in sentence_labels]
                for entity_type, first, end in extract_chunks(label_names):
                    start, stop = sentence[first][1], sentence[end - 1][2]
                    entities.append((start, stop, task_order, {
                        "entity_group": entity_type,
                        "score": sum(sentence_scores[first:end]) / (end - first),
                        "word": text[start:stop],
                        "start": start,
                        "end": stop,
                        "task": name,
                    }))
        return [entity for *_, entity in sorted(entities, key=lambda item: item[:3])]


def words_of_sentences(text: str) -> list[list[Word]]:
    """The words of every sentence of `text`, with character offsets into `text` (the rules of `text.py`)."""
    return [tokenize(text[start:end], start) for start, end in split_sentences(text)]


def chosen_label_probabilities(emissions: torch.Tensor, predictions: torch.Tensor) -> tuple[list, list]:
    """
    Args:
        emissions: `(batch, num_words, num_labels)` emission scores of one head.
        predictions: `(batch, num_words)` Viterbi label ids, `-100` at padding words.

    Returns:
        Label ids and the softmax probability of each, per row, as lists (padding words included: callers cut them).
    """
    chosen = predictions.clamp(min=0)
    # shape: (batch, num_words)
    probabilities = emissions.float().softmax(dim=-1).gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
    return predictions.tolist(), probabilities.tolist()


def stitch_words(window_labels: list[list[int]], window_scores: list[list[float]], windows: list[dict[str, Any]],
                 num_words: list[int]) -> tuple[list[list[int]], list[list[float]]]:
    """Per sentence and word: the label and score from the window that owns the word (`stitch_predictions`)."""
    # stitch_predictions carries ints; stitching each window word's flat index carries labels and scores alike.
    flat_labels, flat_scores, flat_indices = [], [], []
    for labels, scores in zip(window_labels, window_scores):
        flat_indices.append(list(range(len(flat_labels), len(flat_labels) + len(labels))))
        flat_labels.extend(labels)
        flat_scores.extend(scores)
    owners = stitch_predictions(flat_indices, windows, num_words)
    return ([[flat_labels[index] for index in sentence] for sentence in owners],
            [[flat_scores[index] for index in sentence] for sentence in owners])


def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` value of config.json that lets `pipeline(model=..., trust_remote_code=True)` find this."""
    return {PIPELINE_TASK: {"impl": f"{__name__.split('.')[-1]}.{HSTLNERPipeline.__name__}", "pt": ["AutoModel"],
                            "type": "text"}}


# In-process use (`pipeline("hstl-ner", model=model, tokenizer=tokenizer)`) needs the task registered; the remote copy
# of this file registers itself again when the Hub loads it, which is harmless.
PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=HSTLNERPipeline, pt_model=AutoModel, type="text")
