# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""hstl_ner: entity-level NER scores as HSTL reports them, as an `evaluate` metric.

Load it offline from its folder, with or without the `hstl` package installed:
`evaluate.load("<repo>/eval/metrics/hstl_ner")`. It needs only `evaluate` (and `datasets`, which `evaluate`
installs): the default `pip install -e .` of hstl is enough. It reads mentions with conlleval's chunk rules (the rules
of `labels_hstl.extract_chunks`, restated here so that the metric folder stands alone) and counts them as
`hstl.scoring` does: the numbers equal `hstl.scoring` (`python -m eval.score`, `eval/evaluate_model.py`), conlleval's
and seqeval's default mode, bit for bit (tests/test_evaluate_metric.py checks both), and the keys are those of
`evaluate`'s `seqeval` metric.
"""

from collections import Counter

import datasets
import evaluate

_CITATION = """\
@article{chai2022hstl,
    title = {Hierarchical shared transfer learning for biomedical named entity recognition},
    author = {Chai, Zhaoying and Jin, Han and Shi, Shenghui and Zhan, Siyan and Zhuo, Lin and Yang, Yu},
    journal = {BMC Bioinformatics},
    volume = {23},
    pages = {8},
    doi = {10.1186/s12859-021-04551-4},
    year = {2022},
}
@misc{seqeval,
    title = {{seqeval}: A Python framework for sequence labeling evaluation},
    url = {https://github.com/chakki-works/seqeval},
    author = {Hiroki Nakayama},
    year = {2018},
}
"""

_DESCRIPTION = """\
Entity-level precision, recall and F1 for IOB2 named entity recognition, micro-averaged over mentions, as HSTL reports
them: a predicted mention is correct only when its type, first token and last token match a gold mention. Mentions
are read with conlleval's chunk rules (an I-X after O or after another type starts a new mention): the numbers are
seqeval's default mode (not its strict mode) and conlleval's. Undefined ratios are 0.0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of sentences, each a list of predicted IOB2 labels ("O", "B-<type>", "I-<type>").
    references: list of sentences, each a list of gold IOB2 labels, one per predicted label.

Returns:
    overall_precision, overall_recall, overall_f1: micro-averaged over all mentions (float).
    overall_accuracy: the fraction of tokens whose label is right (float).
    <type>: {"precision", "recall", "f1", "number"} for every entity type seen in references or predictions;
        "number" is the count of gold mentions of that type.

Examples:
    >>> hstl_ner = evaluate.load("eval/metrics/hstl_ner")
    >>> results = hstl_ner.compute(
    ...     predictions=[["B-DNA", "I-DNA", "O"], ["B-protein", "O"]],
    ...     references=[["B-DNA", "I-DNA", "O"], ["B-protein", "I-protein"]],
    ... )
    >>> results["overall_f1"], results["protein"]["number"], results["protein"]["f1"]
    (0.5, 1, 0.0)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HstlNer(evaluate.Metric):
    """Entity-level NER scores (seqeval default mode = conlleval = hstl.scoring); see the module docstring."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                    "references": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                }
            ),
            codebase_urls=[],
            reference_urls=["https://www.clips.uantwerpen.be/conll2000/chunking/output.html"],
        )

    def _compute(self, predictions: list[list[str]], references: list[list[str]]) -> dict:
        gold_counts, pred_counts, correct_counts = Counter(), Counter(), Counter()
        num_tokens = num_right_tokens = 0
        for index, (predicted, gold) in enumerate(zip(predictions, references)):
            if len(predicted) != len(gold):
                raise ValueError(f"sentence {index}: expected {len(gold)} predicted labels (one per reference "
                                 f"label), got {len(predicted)}")
            gold_mentions = mentions(gold, f"sentence {index}, references")
            pred_mentions = mentions(predicted, f"sentence {index}, predictions")
            gold_counts.update(entity_type for entity_type, _, _ in gold_mentions)
            pred_counts.update(entity_type for entity_type, _, _ in pred_mentions)
            correct_counts.update(entity_type for entity_type, _, _ in gold_mentions & pred_mentions)
            num_tokens += len(gold)
            num_right_tokens += sum(p == g for p, g in zip(predicted, gold))
        scores = {}
        for entity_type in sorted(set(gold_counts) | set(pred_counts)):
            precision, recall, f1 = precision_recall_f1(
                correct_counts[entity_type], pred_counts[entity_type], gold_counts[entity_type])
            scores[entity_type] = {"precision": precision, "recall": recall, "f1": f1,
                                   "number": gold_counts[entity_type]}
        precision, recall, f1 = precision_recall_f1(
            sum(correct_counts.values()), sum(pred_counts.values()), sum(gold_counts.values()))
        scores["overall_precision"], scores["overall_recall"], scores["overall_f1"] = precision, recall, f1
        scores["overall_accuracy"] = num_right_tokens / num_tokens if num_tokens else 0.0
        return scores


def mentions(labels: list[str], where: str) -> set[tuple[str, int, int]]:
    """`(type, start, end)` of every mention of one sentence's IOB2 labels, by conlleval's rules: a mention runs from
    a `B-X`, or from an `I-X` that does not continue a mention of type X, over the `I-X` that follow it."""
    found, start, current = set(), 0, None
    for position, label in enumerate([*labels, "O"]):
        tag, entity_type = label[:2], label[2:]
        if label != "O" and (tag not in ("B-", "I-") or not entity_type):
            raise ValueError(f"{where}, position {position}: expected an IOB2 label ('O', 'B-X', 'I-X'), "
                             f"got {label!r}")
        if current is not None and (tag != "I-" or entity_type != current):
            found.add((current, start, position))
            current = None
        if tag == "B-" or (tag == "I-" and current is None):
            start, current = position, entity_type
    return found


def precision_recall_f1(num_correct: int, num_pred: int, num_gold: int) -> tuple[float, float, float]:
    """Scores from mention counts; an undefined ratio is 0.0 (seqeval's `zero_division=0`); the F1 expression in
    seqeval's order, so that the floats are identical."""
    precision = num_correct / num_pred if num_pred else 0.0
    recall = num_correct / num_gold if num_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
