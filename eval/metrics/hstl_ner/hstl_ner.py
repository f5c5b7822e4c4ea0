# Copyright 2024 The HSTL developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""hstl_ner: strict entity-level NER scores computed by `hstl.scoring`, as an `evaluate` metric.

Load it offline from its folder: `evaluate.load("<repo>/eval/metrics/hstl_ner")`. It needs the `hstl` package
installed (`pip install -e .` at the repository root); the numbers are the ones `python -m eval.score` prints.
"""

import datasets
import evaluate

from hstl.scoring import score_sentences

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
@inproceedings{tjong-kim-sang-buchholz-2000-introduction,
    title = {Introduction to the {C}o{NLL}-2000 Shared Task: Chunking},
    author = {Tjong Kim Sang, Erik F. and Buchholz, Sabine},
    booktitle = {Fourth Conference on Computational Natural Language Learning and
                 the Second Learning Language in Logic Workshop},
    year = {2000},
}
"""

_DESCRIPTION = """\
Strict entity-level precision, recall and F1 for IOB2 named entity recognition, micro-averaged over mentions.
A predicted mention is correct only when its type, first token and last token match a gold mention. Mentions are read
with the chunk rules of conlleval.pl (an I-X after O or after another type starts a new mention), and the scores equal
seqeval's default mode exactly; undefined ratios are 0.0. Only the IOB2 labels O, B-<type> and I-<type> are accepted.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of sentences, each a list of predicted IOB2 labels.
    references: list of sentences, each a list of gold IOB2 labels, one per predicted label.

Returns:
    precision, recall, f1: micro-averaged over all mentions (float).
    num_gold, num_pred, num_correct: mention counts (int).
    per_type: {entity type: the six keys above} for every type seen in references or predictions.

Examples:
    >>> hstl_ner = evaluate.load("eval/metrics/hstl_ner")
    >>> results = hstl_ner.compute(
    ...     predictions=[["B-DNA", "I-DNA", "O"], ["B-protein", "O"]],
    ...     references=[["B-DNA", "I-DNA", "O"], ["B-protein", "I-protein"]],
    ... )
    >>> results["f1"], results["per_type"]["protein"]["num_correct"]
    (0.5, 0)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HstlNer(evaluate.Metric):
    """Strict entity-level NER scores; see the module docstring."""

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
            reference_urls=["https://www.clips.uantwerpen.be/conll2000/chunking/output.html"],
        )

    def _compute(self, predictions: list[list[str]], references: list[list[str]]) -> dict:
        return score_sentences(gold=references, pred=predictions)
