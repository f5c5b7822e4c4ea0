# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""hstl_ner: entity-level NER scores as HSTL reports them, as an `evaluate` metric, computed by `seqeval`.

Load it offline from its folder, with or without the `hstl` package installed:
`evaluate.load("<repo>/eval/metrics/hstl_ner")`. It needs `evaluate` and `seqeval` (`pip install evaluate seqeval`).
It is a thin wrapper over seqeval's default mode, which reads mentions with conlleval's chunk rules: the numbers equal
`hstl.scoring` (`python -m eval.score`, `eval/evaluate_model.py`) and conlleval's, and the keys are those of
`evaluate`'s `seqeval` metric.
"""

import warnings

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report

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
            codebase_urls=["https://github.com/chakki-works/seqeval"],
            reference_urls=["https://www.clips.uantwerpen.be/conll2000/chunking/output.html"],
        )

    def _compute(self, predictions: list[list[str]], references: list[list[str]]) -> dict:
        for index, (predicted, gold) in enumerate(zip(predictions, references)):
            if len(predicted) != len(gold):
                raise ValueError(f"sentence {index}: expected {len(gold)} predicted labels (one per reference "
                                 f"label), got {len(predicted)}")
        # mode=None is seqeval's default (conlleval) mode; zero_division=0 makes undefined ratios 0.0 without warnings.
        with warnings.catch_warnings():  # numpy warns on the weighted average of a report without any mention
            warnings.simplefilter("ignore", RuntimeWarning)
            report = classification_report(references, predictions, mode=None, output_dict=True, zero_division=0)
        report.pop("macro avg")
        report.pop("weighted avg")
        overall = report.pop("micro avg")
        scores = {
            entity_type: {"precision": float(values["precision"]), "recall": float(values["recall"]),
                          "f1": float(values["f1-score"]), "number": int(values["support"])}
            for entity_type, values in report.items()
        }
        scores["overall_precision"] = float(overall["precision"])
        scores["overall_recall"] = float(overall["recall"])
        scores["overall_f1"] = float(overall["f1-score"])
        num_tokens = sum(len(gold) for gold in references)
        scores["overall_accuracy"] = float(accuracy_score(references, predictions)) if num_tokens else 0.0
        return scores
