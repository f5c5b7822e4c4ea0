"""Tiny-config tests of HSTLConfig / HSTLModel, in the style of transformers' ModelTester."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from transformers import BertConfig, XLNetConfig, XLNetModel

from fresh_process import run_without_hstl
from hstl import HSTLConfig, HSTLForTokenClassification, HSTLModel, viterbi_decode
from modeling_hstl import PAD_LABEL_ID, word_start_positions_from


TASKS = [
    {"name": "chem-a", "labels": ["O", "B-Chemical", "I-Chemical"], "family": "chemical"},
    {"name": "dis-a", "labels": ["O", "B-Disease", "I-Disease"], "family": "disease"},
    {"name": "dis-b", "labels": ["O", "B-Disease", "I-Disease", "B-Other", "I-Other"], "family": "disease"},
    {"name": "gene-a", "labels": ["O", "B-GENE", "I-GENE"], "family": "gene/protein"},
]


class HSTLModelTester:
    """Builds tiny configs and inputs; `create_and_check_*` methods hold the checks."""

    def __init__(self, batch_size=4, seq_length=12, vocab_size=99, hidden_size=32, encoder="xlnet", **config_kwargs):
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.encoder = encoder
        self.config_kwargs = config_kwargs

    def encoder_config(self):
        if self.encoder == "bert":
            return BertConfig(
                vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
            )
        return XLNetConfig(vocab_size=self.vocab_size, d_model=self.hidden_size, n_layer=2, n_head=4, d_inner=37)

    def get_config(self) -> HSTLConfig:
        return HSTLConfig(encoder_config=self.encoder_config().to_dict(), tasks=TASKS, **self.config_kwargs)

    def prepare_inputs(self, seed=0, padding_side="left"):
        """Random sentences of 0..6 words, each word 1-2 sub-tokens, padded on `padding_side`; words left-aligned."""
        generator = torch.Generator().manual_seed(seed)
        word_counts = [6, 3, 0, 5][: self.batch_size]
        rows, starts = [], []
        for num_words in word_counts:
            ids, word_starts = [], []
            for _ in range(num_words):
                word_starts.append(len(ids))
                ids.extend(torch.randint(10, self.vocab_size, (int(torch.randint(1, 3, (1,), generator=generator)),),
                                         generator=generator).tolist())
            ids.extend([4, 3])  # trailing special tokens, XLNet style
            rows.append(ids)
            starts.append(word_starts)
        seq_len = max(len(row) for row in rows)
        max_words = max(word_counts)
        input_ids = torch.full((len(rows), seq_len), 5)
        attention_mask = torch.zeros_like(input_ids)
        word_start_positions = torch.full((len(rows), max_words), -1)
        for row_index, (ids, word_starts) in enumerate(zip(rows, starts)):
            shift = seq_len - len(ids) if padding_side == "left" else 0
            input_ids[row_index, shift:shift + len(ids)] = torch.tensor(ids)
            attention_mask[row_index, shift:shift + len(ids)] = 1
            if word_starts:
                word_start_positions[row_index, : len(word_starts)] = torch.tensor(word_starts) + shift
        task_ids = torch.tensor([0, 1, 2, 1][: self.batch_size])
        labels = torch.full((len(rows), max_words), PAD_LABEL_ID)
        for row_index, num_words in enumerate(word_counts):
            num_labels = len(TASKS[int(task_ids[row_index])]["labels"])
            labels[row_index, :num_words] = torch.randint(0, num_labels, (num_words,), generator=generator)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "word_start_positions": word_start_positions,
            "task_ids": task_ids,
            "labels": labels,
        }

    def create_and_check_shapes(self, model, inputs):
        output = model(**inputs)
        batch_size, num_words = inputs["word_start_positions"].shape
        max_labels = max(len(TASKS[int(task_id)]["labels"]) for task_id in inputs["task_ids"])
        assert output.emissions.shape == (batch_size, num_words, max_labels)
        assert output.predictions.shape == (batch_size, num_words)
        assert output.per_example_loss.shape == (batch_size,)
        for row, task_id in enumerate(inputs["task_ids"].tolist()):
            num_labels = len(TASKS[task_id]["labels"])
            real = output.word_mask[row]
            assert torch.isinf(output.emissions[row, real, num_labels:]).all()
            assert torch.isfinite(output.emissions[row, real, :num_labels]).all()
            assert (output.predictions[row, ~real] == PAD_LABEL_ID).all()
            assert ((output.predictions[row, real] >= 0) & (output.predictions[row, real] < num_labels)).all()


@pytest.fixture
def tester():
    return HSTLModelTester()


@pytest.fixture
def model(tester):
    torch.manual_seed(0)
    return HSTLModel(tester.get_config()).eval()


def test_output_shapes_per_task(tester, model):
    tester.create_and_check_shapes(model, tester.prepare_inputs())


def test_loss_only_with_labels(tester, model):
    inputs = tester.prepare_inputs()
    with_labels = model(**inputs)
    inputs.pop("labels")
    without_labels = model(**inputs)
    assert with_labels.loss is not None and with_labels.loss.dim() == 0 and with_labels.loss > 0
    assert without_labels.loss is None and without_labels.per_example_loss is None
    assert torch.equal(with_labels.predictions, without_labels.predictions)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mixed_batch_loss_is_sum_of_task_losses(reduction):
    tester = HSTLModelTester(loss_reduction=reduction)
    torch.manual_seed(0)
    model = HSTLModel(tester.get_config()).eval()
    inputs = tester.prepare_inputs()
    mixed_loss = model(**inputs).loss
    task_losses = []
    for task_id in inputs["task_ids"].unique().tolist():
        rows = (inputs["task_ids"] == task_id).nonzero(as_tuple=True)[0]
        subset = {key: value[rows] for key, value in inputs.items() if key != "task_ids"}
        loss = model(**subset, task=TASKS[task_id]["name"]).loss
        # "mean" averages over the whole batch, so a task's share is weighted by its number of rows.
        task_losses.append(loss if reduction == "sum" else loss * len(rows) / len(inputs["task_ids"]))
    torch.testing.assert_close(mixed_loss, torch.stack(task_losses).sum())


def test_gradients_reach_shared_family_and_own_head_only(tester):
    torch.manual_seed(0)
    model = HSTLModel(tester.get_config()).train()
    inputs = tester.prepare_inputs()
    inputs["task_ids"] = torch.full_like(inputs["task_ids"], 1)  # every row: dis-a
    inputs["labels"] = inputs["labels"].clamp(max=2)
    model(**inputs).loss.backward()

    def has_gradient(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert has_gradient(model.encoder)
    assert has_gradient(model.family_layers["disease"])
    assert has_gradient(model.heads["dis-a"].emission) and model.heads["dis-a"].crf.transitions.grad is not None
    for other in ["chem-a", "dis-b", "gene-a"]:
        assert all(p.grad is None for p in model.heads[other].parameters()), other
    for family in ["chemical", "gene_protein"]:
        assert all(p.grad is None for p in model.family_layers[family].parameters()), family


def test_unknown_task_names_known_tasks(tester, model):
    inputs = tester.prepare_inputs()
    inputs.pop("task_ids")
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*chem-a.*dis-a.*dis-b.*gene-a"):
        model(**inputs, task="nope")
    with pytest.raises(ValueError, match="known tasks"):
        model.tag(inputs["input_ids"], inputs["word_start_positions"], inputs["attention_mask"], tasks=["nope"])


def test_task_ids_out_of_range_raises(tester, model):
    inputs = tester.prepare_inputs()
    inputs["task_ids"] = torch.tensor([0, 1, 7, 0])
    with pytest.raises(ValueError, match=r"task_ids: expected ids in \[0, 4\)"):
        model(**inputs)


def test_padding_side_does_not_change_outputs(tester, model):
    left = model(**tester.prepare_inputs(padding_side="left"))
    right = model(**tester.prepare_inputs(padding_side="right"))
    assert torch.equal(left.predictions, right.predictions)
    torch.testing.assert_close(left.emissions, right.emissions, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(left.per_example_loss, right.per_example_loss, rtol=1e-4, atol=1e-5)


def test_empty_example_has_zero_loss_and_no_predictions(tester, model):
    output = model(**tester.prepare_inputs())
    assert output.per_example_loss[2] == 0  # the third example has no word
    assert output.word_mask[2].sum() == 0


def test_tag_all_heads_in_one_pass_matches_forward(tester, model):
    inputs = tester.prepare_inputs()
    tagged = model.tag(inputs["input_ids"], inputs["word_start_positions"], inputs["attention_mask"])
    assert set(tagged.predictions) == {task["name"] for task in TASKS}
    for task in TASKS:
        single = model(
            inputs["input_ids"], inputs["word_start_positions"], inputs["attention_mask"], task=task["name"]
        )
        assert torch.equal(tagged.predictions[task["name"]], single.predictions)
        num_labels = len(task["labels"])
        torch.testing.assert_close(
            tagged.emissions[task["name"]] * single.word_mask.unsqueeze(-1), single.emissions[..., :num_labels]
        )


def test_encoder_called_once_when_tagging_all_heads(tester, model):
    inputs = tester.prepare_inputs()
    calls = []
    handle = model.encoder.register_forward_hook(lambda *args: calls.append(1))
    model.tag(inputs["input_ids"], inputs["word_start_positions"], inputs["attention_mask"])
    handle.remove()
    assert len(calls) == 1


def test_bert_encoder_works(tmp_path):
    tester = HSTLModelTester(encoder="bert")
    torch.manual_seed(0)
    model = HSTLModel(tester.get_config()).eval()
    tester.create_and_check_shapes(model, tester.prepare_inputs(padding_side="right"))


def test_no_family_layers_gives_plain_multitask_model():
    tester = HSTLModelTester(use_family_layers=False)
    model = HSTLModel(tester.get_config()).eval()
    assert len(model.family_layers) == 0
    assert model.heads["chem-a"].emission.in_features == tester.hidden_size
    tester.create_and_check_shapes(model, tester.prepare_inputs())


def test_family_hidden_size_sets_head_input():
    tester = HSTLModelTester(family_hidden_size=16)
    model = HSTLModel(tester.get_config()).eval()
    assert model.family_layers["chemical"].dense.out_features == 16
    assert model.heads["gene-a"].emission.in_features == 16
    tester.create_and_check_shapes(model, tester.prepare_inputs())


def test_init_covers_crf_transitions(model):
    bound = model.config.crf_init_range
    for head in model.heads.values():
        for parameter in (head.crf.transitions, head.crf.start_transitions, head.crf.end_transitions):
            assert parameter.abs().max() <= bound and parameter.abs().sum() > 0
        assert abs(head.emission.weight.std().item() - model.config.initializer_range) < 0.01
        assert torch.count_nonzero(head.emission.bias) == 0


# ---------------------------------------------------------------------------------------------------------------------
# CRF decoding against brute force
# ---------------------------------------------------------------------------------------------------------------------


def _brute_force(crf, emissions, num_words):
    """Best sequence and log partition by enumerating every label sequence of one example."""
    num_labels = emissions.shape[-1]
    scores = {}
    for sequence in itertools.product(range(num_labels), repeat=num_words):
        score = crf.start_transitions[sequence[0]] + emissions[0, sequence[0]]
        for position in range(1, num_words):
            score = score + crf.transitions[sequence[position - 1], sequence[position]]
            score = score + emissions[position, sequence[position]]
        scores[sequence] = score + crf.end_transitions[sequence[-1]]
    best = max(scores, key=lambda sequence: scores[sequence])
    return list(best), torch.logsumexp(torch.stack(list(scores.values())), dim=0)


@pytest.mark.parametrize("seed", range(8))
def test_viterbi_and_likelihood_match_brute_force(seed):
    from torchcrf import CRF

    generator = torch.Generator().manual_seed(seed)
    num_labels = 3 + seed % 3
    crf = CRF(num_labels, batch_first=True)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter, generator=generator)
    lengths = [5, 1, 3, 0, 4]
    emissions = torch.randn(len(lengths), max(lengths), num_labels, generator=generator)
    word_mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    predictions = viterbi_decode(crf, emissions, word_mask)
    for row, length in enumerate(lengths):
        assert (predictions[row, length:] == PAD_LABEL_ID).all()
        if length == 0:
            continue
        best, log_partition = _brute_force(crf, emissions[row, :length], length)
        assert predictions[row, :length].tolist() == best
        # the CRF's log-likelihood of the best path = its score - log partition
        log_likelihood = crf(emissions[row : row + 1, :length], torch.tensor([best]), reduction="sum")
        best_score = _brute_force_score(crf, emissions[row, :length], best)
        torch.testing.assert_close(log_likelihood, best_score - log_partition, rtol=1e-5, atol=1e-5)
    # and the batched decoder agrees with pytorch-crf's own on non-empty rows
    non_empty = torch.tensor(lengths) > 0
    reference = crf.decode(emissions[non_empty], mask=word_mask[non_empty])
    ours = [row[row != PAD_LABEL_ID].tolist() for row in predictions[non_empty]]
    assert ours == reference


def test_grouped_heads_decode_like_each_head_alone():
    from torchcrf import CRF

    from hstl import viterbi_decode_heads

    generator = torch.Generator().manual_seed(11)
    label_counts = [3, 5, 3, 9, 5, 3]  # heads sharing a label count are stacked into one Viterbi batch
    crfs = [CRF(count, batch_first=True) for count in label_counts]
    for crf in crfs:
        for parameter in crf.parameters():
            torch.nn.init.normal_(parameter, std=3.0, generator=generator)
    lengths = torch.tensor([7, 1, 0, 4])
    word_mask = torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)
    emissions = [torch.randn(4, 7, count, generator=generator) for count in label_counts]
    grouped = viterbi_decode_heads(crfs, emissions, word_mask)
    for crf, head_emissions, head_predictions in zip(crfs, emissions, grouped):
        assert torch.equal(head_predictions, viterbi_decode(crf, head_emissions, word_mask))


def _brute_force_marginals(start, end, transitions, emissions: list[list[float]]) -> list[list[float]]:
    """P(label at each word) by enumerating every label sequence, in plain Python floats (no torch arithmetic)."""
    num_words, num_labels = len(emissions), len(emissions[0])
    weights = {}
    for sequence in itertools.product(range(num_labels), repeat=num_words):
        score = start[sequence[0]] + emissions[0][sequence[0]] + end[sequence[-1]]
        score += sum(transitions[sequence[position - 1]][sequence[position]] + emissions[position][sequence[position]]
                     for position in range(1, num_words))
        weights[sequence] = math.exp(score)
    partition = sum(weights.values())
    return [[sum(weight for sequence, weight in weights.items() if sequence[position] == label) / partition
             for label in range(num_labels)] for position in range(num_words)]


@pytest.mark.parametrize("seed", range(4))
def test_marginals_equal_brute_force_enumeration_with_padding(seed):
    from torchcrf import CRF

    from hstl import crf_marginals

    generator = torch.Generator().manual_seed(seed)
    crf = CRF(3, batch_first=True)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter, std=2.0, generator=generator)
    lengths = [4, 2, 1, 0, 3]  # padding words after each row's last, and one row without words
    emissions = torch.randn(len(lengths), 4, 3, generator=generator) * 2
    word_mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    marginals = crf_marginals(crf, emissions, word_mask)
    assert marginals.shape == (len(lengths), 4, 3) and marginals.dtype == torch.float32
    start, end, transitions = crf.start_transitions.tolist(), crf.end_transitions.tolist(), crf.transitions.tolist()
    for row, length in enumerate(lengths):
        assert (marginals[row, length:] == 0).all()
        if length:
            expected = _brute_force_marginals(start, end, transitions, emissions[row, :length].tolist())
            torch.testing.assert_close(marginals[row, :length], torch.tensor(expected), rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_cpu_marginals_equal_brute_force_on_long_rows_to_float32_rounding(seed):
    """On the CPU, marginals come from float64 products of probabilities (`_marginals_product_loop`): within float32's
    rounding of the exact values on rows of up to 9 words, two heads of 3 labels stacked and one of 4, where the
    float32 log-space loop drifts by about 1e-6 a word."""
    import modeling_hstl

    generator = torch.Generator().manual_seed(300 + seed)
    label_counts = [3, 3, 4]
    crfs = _random_crfs(label_counts, generator, std=2.0)
    lengths = [9, 6, 0, 1, 8]
    word_mask = torch.arange(9).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    emissions = [torch.randn(len(lengths), 9, count, generator=generator) * 4 for count in label_counts]
    marginals = modeling_hstl.crf_marginals_heads(crfs, emissions, word_mask)
    for crf, head_emissions, head_marginals in zip(crfs, emissions, marginals):
        assert head_marginals.dtype == torch.float32
        start, end, transitions = crf.start_transitions.tolist(), crf.end_transitions.tolist(), crf.transitions.tolist()
        for row, length in enumerate(lengths):
            assert (head_marginals[row, length:] == 0).all()
            if length:
                expected = _brute_force_marginals(start, end, transitions, head_emissions[row, :length].tolist())
                torch.testing.assert_close(head_marginals[row, :length], torch.tensor(expected), rtol=0, atol=2e-7)


def test_cpu_marginals_of_a_row_whose_probabilities_underflow_come_from_log_space():
    """Scores 800 apart make every label's probability underflow at word 2 even in float64; such a row is computed in
    log space with its own head's transitions, the others keep their products. Two heads stacked (per-row transition
    scores), start and end scores 0:
    - head 1: transitions [[0, -800], [-800, 0]], emissions [0, -800], [-800, 0]: paths (0,0), (0,1), (1,1) score
      -800 and (1,0) -2400, so by hand word 1 is label 0 in 2 of 3, word 2 label 1 in 2 of 3;
    - head 2: transitions [[-800, 0], [0, -800]], emissions [0, -800], [0, -800]: (0,0), (0,1), (1,0) score -800,
      (1,1) -2400: both words label 0 in 2 of 3.
    Each head's other row has emissions 0: two paths score 0 and two -800, so every marginal is 1/2."""
    from torchcrf import CRF

    import modeling_hstl

    crfs = [CRF(2, batch_first=True), CRF(2, batch_first=True)]
    for crf, transitions in zip(crfs, ([[0.0, -800.0], [-800.0, 0.0]], [[-800.0, 0.0], [0.0, -800.0]])):
        torch.nn.init.zeros_(crf.start_transitions)
        torch.nn.init.zeros_(crf.end_transitions)
        with torch.no_grad():
            crf.transitions.copy_(torch.tensor(transitions))
    ordinary = torch.zeros(2, 2)
    emissions = [torch.stack([ordinary, torch.tensor([[0.0, -800.0], [-800.0, 0.0]])]),
                 torch.stack([torch.tensor([[0.0, -800.0], [0.0, -800.0]]), ordinary])]
    word_mask = torch.ones(2, 2, dtype=torch.bool)
    first, second = modeling_hstl.crf_marginals_heads(crfs, emissions, word_mask)
    # the log-space loop's float32 sums of scores near 800 carry about 1e-5 of rounding
    torch.testing.assert_close(first[1], torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3]]), rtol=0, atol=1e-5)
    torch.testing.assert_close(second[0], torch.tensor([[2 / 3, 1 / 3], [2 / 3, 1 / 3]]), rtol=0, atol=1e-5)
    torch.testing.assert_close(first[0], torch.full((2, 2), 0.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(second[1], torch.full((2, 2), 0.5), rtol=0, atol=1e-6)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_cpu_marginals_of_a_row_whose_step_totals_fall_among_subnormal_numbers_come_from_log_space(direction):
    """Two words, emissions 0. Forward: start scores [0, -1000], transitions [[-740, -741], [0, 0]], end 0; the
    forward step's total is about e^-740, below float64's smallest normal number, where products keep fewer digits
    (nothing is NaN). By hand, word 1 is label 0 (label 1 costs e^-1000) and word 2 is label 0 with probability
    e^-740 / (e^-740 + e^-741) = 1 / (1 + e^-1). Backward is the mirror image: end scores [0, -1000], transitions
    [[-740, 0], [-741, 0]], start 0; the backward step's total is about e^-740, word 1 is label 0 with probability
    1 / (1 + e^-1) and word 2 is label 0."""
    from torchcrf import CRF

    from hstl import crf_marginals

    crf = CRF(2, batch_first=True)
    unlikely = torch.tensor([0.0, -1000.0])
    with torch.no_grad():
        crf.start_transitions.copy_(unlikely if direction == "forward" else torch.zeros(2))
        crf.end_transitions.copy_(unlikely if direction == "backward" else torch.zeros(2))
        crf.transitions.copy_(torch.tensor([[-740.0, -741.0], [0.0, 0.0]]) if direction == "forward"
                              else torch.tensor([[-740.0, 0.0], [-741.0, 0.0]]))
    marginals = crf_marginals(crf, torch.zeros(1, 2, 2), torch.ones(1, 2, dtype=torch.bool))
    split = [1 / (1 + math.exp(-1)), 1 - 1 / (1 + math.exp(-1))]
    expected = [[1.0, 0.0], split] if direction == "forward" else [split, [1.0, 0.0]]
    # the log-space loop adds float32 scores near 1000 (spacing 6e-5); the subnormal products are 1.7e-3 off
    torch.testing.assert_close(marginals[0], torch.tensor(expected), rtol=0, atol=1e-4)


@pytest.mark.parametrize("decode", ["viterbi_decode", "crf_marginals"])
def test_crf_loops_refuse_a_word_mask_with_padding_before_a_real_word(decode):
    """The loops take each row's words as its first ones (`word_mask` left-aligned): a mask with a gap would decode
    other words than it marks, so it is refused, naming the row."""
    from torchcrf import CRF

    import hstl

    word_mask = torch.tensor([[True, True, False], [True, False, True]])
    with pytest.raises(ValueError, match=r"word_mask: expected each row's real words first \(left-aligned\).* row 1"):
        getattr(hstl, decode)(CRF(3, batch_first=True), torch.zeros(2, 3, 3), word_mask)


def test_cpu_marginals_of_a_row_whose_backward_total_alone_underflows_come_from_log_space():
    """Three words (0, 1, 2), start [-300, -20], end [-40, -740], transitions [[-300, -700], [-710, -800]], emissions
    [0, -800], [-710, -30], [-740, -30]. By hand the eight paths score: (0,0,0) -2390, (0,1,0) -2520, (0,1,1) -2600,
    (0,0,1) -2780, (1,1,0) -3140, (1,1,1) -3220, (1,0,0) -3320, (1,0,1) -3710, so every word is label 0 with
    probability 1 - e^-130. In float64 products the backward step from word 2 to word 1 totals about 4.5e-309, among
    the subnormal numbers where digits are lost, while every forward total (the smallest about 7e-218) and every
    word's alpha-beta total (about 1e-304) stays normal: only the backward check sends this row to log space, and
    without it word 2 comes out as label 1."""
    from torchcrf import CRF

    from hstl import crf_marginals

    crf = CRF(2, batch_first=True)
    with torch.no_grad():
        crf.start_transitions.copy_(torch.tensor([-300.0, -20.0]))
        crf.end_transitions.copy_(torch.tensor([-40.0, -740.0]))
        crf.transitions.copy_(torch.tensor([[-300.0, -700.0], [-710.0, -800.0]]))
    emissions = torch.tensor([[[0.0, -800.0], [-710.0, -30.0], [-740.0, -30.0]]])
    marginals = crf_marginals(crf, emissions, torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(marginals[0], torch.tensor([[1.0, 0.0]] * 3), rtol=0, atol=1e-6)


def test_grouped_heads_marginals_equal_each_head_alone_and_tag_returns_them_only_when_asked(tester, model):
    from torchcrf import CRF

    from hstl import crf_marginals, crf_marginals_heads

    generator = torch.Generator().manual_seed(5)
    label_counts = [3, 5, 3]
    crfs = [CRF(count, batch_first=True) for count in label_counts]
    for crf in crfs:
        for parameter in crf.parameters():
            torch.nn.init.normal_(parameter, generator=generator)
    word_mask = torch.arange(6).unsqueeze(0) < torch.tensor([6, 2, 0]).unsqueeze(1)
    emissions = [torch.randn(3, 6, count, generator=generator) for count in label_counts]
    for crf, head_emissions, grouped in zip(crfs, emissions, crf_marginals_heads(crfs, emissions, word_mask)):
        torch.testing.assert_close(grouped, crf_marginals(crf, head_emissions, word_mask))
    inputs = tester.prepare_inputs(seed=2)
    assert model.tag(**inputs).marginals is None
    tagged = model.tag(**inputs, return_marginals=True)
    assert list(tagged.marginals) == [task["name"] for task in TASKS]
    for name, head_marginals in tagged.marginals.items():
        torch.testing.assert_close(head_marginals,
                                   crf_marginals(model.heads[name].crf, tagged.emissions[name], tagged.word_mask))


def _brute_force_score(crf, emissions, sequence):
    score = crf.start_transitions[sequence[0]] + emissions[0, sequence[0]]
    for position in range(1, len(sequence)):
        score = score + crf.transitions[sequence[position - 1], sequence[position]] + emissions[position, sequence[position]]
    return score + crf.end_transitions[sequence[-1]]



# ---------------------------------------------------------------------------------------------------------------------
# The CRF as a scan over positions (what an accelerator runs) against brute force and the loop over positions
# ---------------------------------------------------------------------------------------------------------------------


def _random_crfs(label_counts, generator, std=2.0):
    from torchcrf import CRF

    crfs = [CRF(count, batch_first=True) for count in label_counts]
    for crf in crfs:
        for parameter in crf.parameters():
            torch.nn.init.normal_(parameter, std=std, generator=generator)
    return crfs


@pytest.mark.parametrize("seed", range(6))
def test_scan_decodes_and_computes_marginals_as_brute_force_and_the_loop_with_all_heads_stacked(seed):
    import modeling_hstl

    generator = torch.Generator().manual_seed(100 + seed)
    label_counts = [3, 3 + seed % 3, 3]  # equal label counts are stacked into one batch with per-row transitions
    crfs = _random_crfs(label_counts, generator)
    lengths = [5, 1, 0, 3, 2, 4][: 3 + seed % 4]  # a row of one word, a row without words, padding after each
    num_words = max(lengths)
    word_mask = torch.arange(num_words).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    emissions = [torch.randn(len(lengths), num_words, count, generator=generator) * 3 for count in label_counts]
    scan_paths = modeling_hstl._per_head_stacked(modeling_hstl._viterbi_scan, crfs, emissions, word_mask)
    scan_marginals = modeling_hstl._per_head_stacked(modeling_hstl._marginals_scan, crfs, emissions, word_mask)
    loop_paths = modeling_hstl._per_head_stacked(modeling_hstl._viterbi_loop, crfs, emissions, word_mask)
    loop_marginals = modeling_hstl._per_head_stacked(modeling_hstl._marginals_loop, crfs, emissions, word_mask)
    for crf, head_emissions, paths, marginals, old_paths, old_marginals in zip(
            crfs, emissions, scan_paths, scan_marginals, loop_paths, loop_marginals):
        assert torch.equal(paths, old_paths)
        torch.testing.assert_close(marginals, old_marginals, rtol=0, atol=1e-5)
        start, end, transitions = crf.start_transitions.tolist(), crf.end_transitions.tolist(), crf.transitions.tolist()
        for row, length in enumerate(lengths):
            assert (paths[row, length:] == PAD_LABEL_ID).all() and (marginals[row, length:] == 0).all()
            if length == 0:
                continue
            best, _ = _brute_force(crf, head_emissions[row, :length], length)
            assert paths[row, :length].tolist() == best
            expected = _brute_force_marginals(start, end, transitions, head_emissions[row, :length].tolist())
            # The scan works on scores shifted to small numbers, so it is closer to exact than the loop's 1e-5.
            torch.testing.assert_close(marginals[row, :length], torch.tensor(expected), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_scan_loss_and_its_gradients_equal_pytorch_crf_and_brute_force(seed):
    import modeling_hstl

    generator = torch.Generator().manual_seed(200 + seed)
    (crf,) = _random_crfs([3 + seed % 3], generator, std=1.0)
    lengths = [4, 1, 3, 2]
    word_mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    emissions = torch.randn(4, 4, crf.num_tags, generator=generator) * 2
    labels = torch.randint(0, crf.num_tags, (4, 4), generator=generator).masked_fill(~word_mask, 0)
    parameters = [crf.start_transitions, crf.end_transitions, crf.transitions]

    def loss_and_gradients(loss_function):
        trainable = emissions.clone().requires_grad_()
        loss = loss_function(trainable)
        return loss.detach(), torch.autograd.grad(loss.sum(), [trainable, *parameters])

    scan_loss, scan_gradients = loss_and_gradients(
        lambda trainable: modeling_hstl._negative_log_likelihood_scan(crf, trainable, labels, word_mask))
    reference_loss, reference_gradients = loss_and_gradients(
        lambda trainable: -crf(trainable, labels, mask=word_mask, reduction="none"))
    torch.testing.assert_close(scan_loss, reference_loss, rtol=1e-5, atol=1e-5)
    for scan_gradient, reference_gradient in zip(scan_gradients, reference_gradients):
        torch.testing.assert_close(scan_gradient, reference_gradient, rtol=1e-5, atol=1e-5)
    for row, length in enumerate(lengths):
        _, log_partition = _brute_force(crf, emissions[row, :length], length)
        gold = _brute_force_score(crf, emissions[row, :length], labels[row, :length].tolist())
        torch.testing.assert_close(scan_loss[row], (log_partition - gold).detach(), rtol=1e-5, atol=1e-5)


def test_a_trained_model_tags_the_shipped_test_splits_alike_with_the_scan_and_the_loop(tiny_model_dir, monkeypatch):
    """What an accelerator computes (the scan) against what the CPU computes (the loop), on a trained model's own
    emissions over every shipped sample's test split: the same labels, marginals within 1e-5."""
    import modeling_hstl
    from conftest import sample_sentences
    from hstl.inference import load_model_and_tokenizer, tag_sentences_with_marginals
    from hstl.inference.loading import window_settings

    model, tokenizer = load_model_and_tokenizer(tiny_model_dir)
    sentences = sample_sentences("test")
    settings = window_settings(tiny_model_dir)
    loop = tag_sentences_with_marginals(model, tokenizer, sentences, settings=settings)
    every_head = dict.fromkeys(modeling_hstl.CPU_SCAN_MAX_LABELS, modeling_hstl.SCAN_MAX_LABELS)
    monkeypatch.setattr(modeling_hstl, "CPU_SCAN_MAX_LABELS", every_head)
    scan = tag_sentences_with_marginals(model, tokenizer, sentences, settings=settings)
    assert sum(map(len, sentences)) > 1000 and list(scan.labels) == ["chem", "disease"]
    assert scan.labels == loop.labels
    assert any(label != "O" for labels in scan.labels["chem"] for label in labels)  # the model tags something
    for task, sentence_marginals in loop.marginals.items():
        for sentence_index, word_marginals in enumerate(sentence_marginals):
            for word_index, marginals in enumerate(word_marginals):
                scanned = scan.marginals[task][sentence_index][word_index]
                assert scanned.keys() == marginals.keys()
                assert max(abs(scanned[label] - marginals[label]) for label in marginals) < 1e-5


def test_the_scan_runs_on_accelerators_for_heads_with_few_labels_and_on_the_cpu_where_it_was_measured_faster():
    import modeling_hstl

    def pays(num_labels, device, kind):
        emissions = torch.empty(2, 7, num_labels, device=device)
        return modeling_hstl._scan_pays(emissions, modeling_hstl.CPU_SCAN_MAX_LABELS[kind])

    for kind in ("viterbi", "marginals", "nll"):
        assert pays(3, "meta", kind) and pays(modeling_hstl.SCAN_MAX_LABELS, "meta", kind)
        assert not pays(modeling_hstl.SCAN_MAX_LABELS + 1, "meta", kind)
    assert pays(3, "cpu", "nll") and not pays(9, "cpu", "nll")
    assert not pays(3, "cpu", "viterbi") and not pays(3, "cpu", "marginals")
    assert not modeling_hstl._scan_pays(torch.empty(2, 0, 3, device="meta"), 5)  # no words: the loop handles it


def test_model_decoding_matches_brute_force_with_token_padding_on_either_side(tester, model):
    for padding_side in ("left", "right"):
        inputs = tester.prepare_inputs(seed=3, padding_side=padding_side)
        output = model(**inputs)
        for row, task_id in enumerate(inputs["task_ids"].tolist()):
            num_words = int(output.word_mask[row].sum())
            if num_words == 0:
                continue
            head = model.heads[TASKS[task_id]["name"]]
            num_labels = len(TASKS[task_id]["labels"])
            best, _ = _brute_force(head.crf, output.emissions[row, :num_words, :num_labels], num_words)
            assert output.predictions[row, :num_words].tolist() == best


def test_each_word_is_read_at_its_first_subtoken(tester, model):
    for padding_side in ("left", "right"):
        inputs = tester.prepare_inputs(seed=5, padding_side=padding_side)
        starts = inputs["word_start_positions"]
        word_states, word_mask = model.encode_words(inputs["input_ids"], starts, inputs["attention_mask"])
        token_states = model.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     use_mems=False).last_hidden_state
        multi_subtoken_words = 0
        for row in range(starts.shape[0]):
            row_starts = starts[row][starts[row] >= 0].tolist()
            assert word_mask[row].sum() == len(row_starts)
            for word, start in enumerate(row_starts):
                torch.testing.assert_close(word_states[row, word], token_states[row, start], rtol=0, atol=0)
            ends = row_starts[1:] + [int(inputs["attention_mask"][row].nonzero().max()) - 1]  # 2 trailing specials
            multi_subtoken_words += sum(end - start > 1 for start, end in zip(row_starts, ends))
        assert multi_subtoken_words > 0, "the inputs must hold words of several sub-tokens"


def _brute_force_nll(crf, emissions: list[list[float]], labels: list[int]) -> float:
    """-(score of the gold path - log of the sum over all label sequences of exp(score)), by enumeration."""
    start, end = crf.start_transitions.tolist(), crf.end_transitions.tolist()
    transitions = crf.transitions.tolist()

    def path_score(sequence):
        score = start[sequence[0]] + emissions[0][sequence[0]]
        for position in range(1, len(sequence)):
            score += transitions[sequence[position - 1]][sequence[position]] + emissions[position][sequence[position]]
        return score + end[sequence[-1]]

    all_scores = torch.tensor([path_score(sequence)
                               for sequence in itertools.product(range(len(emissions[0])), repeat=len(emissions))],
                              dtype=torch.float64)
    return -(path_score(labels) - torch.logsumexp(all_scores, dim=0).item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "token_mean"])
@pytest.mark.parametrize("padding_side", ["left", "right"])  # XLNet pads on the left, BERT on the right
def test_loss_equals_brute_force_crf_likelihood(reduction, padding_side):
    tester = HSTLModelTester(loss_reduction=reduction)
    torch.manual_seed(0)
    model = HSTLModel(tester.get_config()).eval()
    inputs = tester.prepare_inputs(seed=2, padding_side=padding_side)
    output = model(**inputs)
    expected = []
    for row, task_id in enumerate(inputs["task_ids"].tolist()):
        num_words = int((inputs["word_start_positions"][row] >= 0).sum())
        if num_words == 0:  # the third example is empty: no loss
            expected.append(0.0)
            continue
        num_labels = len(TASKS[task_id]["labels"])
        emissions = output.emissions[row, :num_words, :num_labels].tolist()
        labels = inputs["labels"][row, :num_words].tolist()
        expected.append(_brute_force_nll(model.heads[TASKS[task_id]["name"]].crf, emissions, labels))
    assert 0.0 in expected and len(expected) == 4
    torch.testing.assert_close(output.per_example_loss.double(), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)
    total_words = int((inputs["word_start_positions"] >= 0).sum())
    reduced = {"mean": sum(expected) / len(expected), "sum": sum(expected), "token_mean": sum(expected) / total_words}
    torch.testing.assert_close(output.loss.double(), torch.tensor(reduced[reduction], dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Saving, loading, remote code, pretrained encoders
# ---------------------------------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path, tester, model):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    config = json.loads((tmp_path / "config.json").read_text())
    # Whichever class saves it, the folder names every Auto class and pipeline, and holds the whole remote-code group.
    assert config["auto_map"] == {"AutoConfig": "configuration_hstl.HSTLConfig", "AutoModel": "modeling_hstl.HSTLModel",
                                  "AutoModelForTokenClassification": "modeling_hstl.HSTLForTokenClassification"}
    assert set(config["custom_pipelines"]) == {"token-classification", "ner", "hstl-ner"}
    from hstl.remote_code import remote_code_files

    assert sorted(path.name for path in tmp_path.glob("*.py")) == sorted(path.name for path in remote_code_files())
    loaded = HSTLModel.from_pretrained(tmp_path).eval()
    inputs = tester.prepare_inputs()
    expected, got = model(**inputs), loaded(**inputs)
    assert torch.equal(expected.emissions, got.emissions)
    assert torch.equal(expected.predictions, got.predictions)
    assert torch.equal(expected.loss, got.loss)
    assert loaded.config.tasks == model.config.tasks


REMOTE_CODE_SCRIPT = """
import json, sys
import torch
from transformers import AutoConfig, AutoModel

folder, inputs_file = sys.argv[1:3]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__name__ == "HSTLModel", type(model)
assert "hstl" not in sys.modules
inputs = {key: torch.tensor(value) for key, value in json.load(open(inputs_file)).items()}
output = model(**inputs)
print(json.dumps({"emissions": output.emissions.tolist(), "predictions": output.predictions.tolist(),
                  "loss": output.loss.item(), "module": type(model).__module__, "tasks": config.task_names}))
"""


def test_remote_code_loads_in_fresh_process_without_repo(tmp_path, tester, model):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    inputs = tester.prepare_inputs()
    (tmp_path / "inputs.json").write_text(json.dumps({key: value.tolist() for key, value in inputs.items()}))
    remote = run_without_hstl(REMOTE_CODE_SCRIPT, [str(folder), str(tmp_path / "inputs.json")], tmp_path / "elsewhere")
    assert remote["module"].startswith("transformers_modules")
    assert remote["tasks"] == [task["name"] for task in TASKS]
    local = model(**inputs)
    assert remote["predictions"] == local.predictions.tolist()
    assert torch.equal(torch.tensor(remote["emissions"]), local.emissions)
    assert remote["loss"] == local.loss.item()


def test_from_encoder_keeps_pretrained_hidden_states(tmp_path, tester):
    torch.manual_seed(1)
    plain = XLNetModel(tester.encoder_config()).eval()
    plain.save_pretrained(tmp_path / "xlnet")
    model = HSTLModel.from_encoder(str(tmp_path / "xlnet"), tasks=TASKS).eval()
    inputs = tester.prepare_inputs()
    expected = plain(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_mems=False)
    got = model.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_mems=False)
    assert torch.equal(expected.last_hidden_state, got.last_hidden_state)
    # and the saved HSTL folder keeps them through from_pretrained too (no re-initialisation of loaded weights)
    model.save_pretrained(tmp_path / "hstl")
    reloaded = HSTLModel.from_pretrained(tmp_path / "hstl").eval()
    again = reloaded.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_mems=False)
    assert torch.equal(expected.last_hidden_state, again.last_hidden_state)


def test_add_task_and_keep_tasks(tester, model):
    model.add_task("species-new", ["O", "B-Species", "I-Species"], "species")
    assert model.config.task_names[-1] == "species-new"
    assert "species" in model.family_layers
    inputs = tester.prepare_inputs()
    inputs.pop("task_ids")
    inputs["labels"] = inputs["labels"].clamp(max=2)
    output = model(**inputs, task="species-new")
    assert output.loss is not None and torch.isfinite(output.loss)
    model.keep_tasks(["species-new"])
    assert list(model.heads) == ["species-new"] and list(model.family_layers) == ["species"]
    assert model.config.task_names == ["species-new"]
    with pytest.raises(ValueError, match="exists already"):
        model.add_task("species-new", ["O"], "species")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": [{"name": "a", "labels": ["O", "X-Y"], "family": "chemical"}]}, "IOB2"),
        ({"tasks": [{"name": "a", "labels": [], "family": "chemical"}]}, "non-empty list"),
        ({"tasks": [{"name": "a", "labels": ["O"], "family": ""}]}, "family"),
        ({"tasks": [{"name": "a", "labels": ["O"]}]}, "missing"),
        ({"tasks": [{"name": "a", "labels": ["O"], "family": "x"}] * 2}, "unique task names"),
        ({"loss_reduction": "max"}, "loss_reduction"),
        ({"hidden_dropout": 1.5}, "hidden_dropout"),
        ({"family_activation": "swish"}, "family_activation"),
        ({"encoder_config": {"d_model": 3}}, "model_type"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HSTLConfig(**kwargs)


def test_config_round_trip_keeps_tasks_and_encoder(tmp_path, tester):
    config = tester.get_config()
    config.save_pretrained(tmp_path)
    loaded = HSTLConfig.from_pretrained(tmp_path)
    assert loaded.tasks == TASKS
    assert loaded.families == ["chemical", "disease", "gene/protein"]
    assert loaded.encoder_config.model_type == "xlnet" and loaded.encoder_config.d_model == tester.hidden_size
    assert loaded.task_label2id("dis-b")["I-Other"] == 4


# ---------------------------------------------------------------------------------------------------------------------
# The token-classification view and the merged label space
# ---------------------------------------------------------------------------------------------------------------------

MERGED = ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease", "B-Other", "I-Other", "B-Gene", "I-Gene"]
"""TASKS' labels merged over shared entity types (BC2GM's GENE is Gene, Other has no default and stays): O, then
B-/I- per entity type in order of first appearance."""


def test_config_id2label_is_the_merged_label_space_and_follows_the_tasks(tmp_path, tester):
    config = tester.get_config()
    assert config.id2label == dict(enumerate(MERGED))
    assert config.label2id == {label: index for index, label in enumerate(MERGED)} and config.num_labels == 9
    config.add_task("species-a", ["O", "B-Species", "I-Species"], "species")
    assert list(config.id2label.values()) == MERGED + ["B-Species", "I-Species"]
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["id2label"]["10"] == "I-Species"
    assert HSTLConfig.from_pretrained(tmp_path).id2label == config.id2label
    config.tasks = config.tasks[:1]  # as keep_tasks does
    assert config.id2label == {0: "O", 1: "B-Chemical", 2: "I-Chemical"}
    with pytest.raises(ValueError, match="id2label: expected the merged labels of the tasks"):
        HSTLConfig(tasks=TASKS[:1], id2label={0: "LABEL_0", 1: "LABEL_1"})


def test_word_start_positions_from_attention_mask_and_word_ids():
    attention_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    assert word_start_positions_from(attention_mask).tolist() == [[2, 3, 4], [0, 1, 2], [-1, -1, -1]]
    # [CLS] w0 w0 w1 [SEP] pad / pad <w0> <w1> <w1> <w1> <sep>: each word starts at its first sub-token.
    word_ids = torch.tensor([[-1, 0, 0, 1, -1, -1], [-1, 0, 1, 1, 1, -1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]])
    assert word_start_positions_from(mask, word_ids).tolist() == [[1, 3], [1, 2]]
    with pytest.raises(ValueError, match=r"word_ids: expected shape \(2, 6\)"):
        word_start_positions_from(mask, word_ids[:, :5])


def test_token_classification_view_loads_the_same_weights_both_ways(tmp_path, model):
    model.save_pretrained(tmp_path / "base")
    classifier = HSTLForTokenClassification.from_pretrained(tmp_path / "base")
    assert classifier.state_dict().keys() == {f"hstl.{key}" for key in model.state_dict()}
    for key, value in model.state_dict().items():
        assert torch.equal(classifier.state_dict()[f"hstl.{key}"], value), key
    classifier.save_pretrained(tmp_path / "classifier")
    reloaded = HSTLModel.from_pretrained(tmp_path / "classifier")
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_token_classification_logits_and_predictions_merge_the_heads(tester, model):
    from mentions_hstl import mentions_to_labels, merge_mentions

    torch.manual_seed(3)
    with torch.no_grad():  # loud heads, so that the heads find (overlapping) mentions
        for head in model.heads.values():
            head.emission.weight.normal_(std=3.0)
    classifier = HSTLForTokenClassification(model.config).eval()
    classifier.hstl.load_state_dict(model.state_dict())
    inputs = tester.prepare_inputs(seed=4, padding_side="right")
    output = classifier(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        word_start_positions=inputs["word_start_positions"])
    batch_size, seq_len = inputs["input_ids"].shape
    assert output.logits.shape == (batch_size, seq_len, len(MERGED))
    tagged = model.tag(inputs["input_ids"], inputs["word_start_positions"], inputs["attention_mask"],
                       return_marginals=True)
    found_mentions = 0
    for row in range(batch_size):
        starts = inputs["word_start_positions"][row][inputs["word_start_positions"][row] >= 0].tolist()
        labels_by_task = {task["name"]: [task["labels"][label] for label in tagged.predictions[task["name"]][row,
                          :len(starts)].tolist()] for task in TASKS}
        scores_by_task = {task["name"]: [dict(zip(task["labels"], word)) for word in
                                         tagged.marginals[task["name"]][row, :len(starts)].tolist()] for task in TASKS}
        mentions = merge_mentions(labels_by_task, "confidence", scores_by_task,
                                  entity_type_of=model.config.entity_types)  # GENE is Gene
        found_mentions += len(mentions)
        expected = [MERGED.index(label) for label in mentions_to_labels(mentions, len(starts))]
        assert output.predictions[row, starts].tolist() == expected
        others = [position for position in range(seq_len) if position not in starts]
        assert (output.predictions[row, others] == PAD_LABEL_ID).all() and (output.logits[row, others] == 0).all()
        for word, start in enumerate(starts):
            for merged_label, label in enumerate(MERGED):  # the log of the best CRF marginal a head gives the label
                best = max(sum(tagged.marginals[task["name"]][row, word, head_index]
                               for head_index, head_label in enumerate(model.config.entity_labels(task["name"]))
                               if head_label == label)
                           for task in TASKS)
                torch.testing.assert_close(output.logits[row, start, merged_label], torch.as_tensor(best).log())
    assert found_mentions > 3


def test_logits_are_log_crf_marginals_summed_over_a_heads_labels_of_one_type(tester):
    """One head whose label types DNA and protein both map to Gene: each word's logit of B-Gene is the log of the
    probability, summed over every label sequence (brute force), that the word is B-DNA or B-protein."""
    import itertools

    labels = ["O", "B-DNA", "I-DNA", "B-protein", "I-protein"]
    config = HSTLConfig(encoder_config=tester.encoder_config().to_dict(),
                        tasks=[{"name": "jnlpba", "labels": labels, "family": "gene"}])
    assert [config.id2label[index] for index in range(3)] == ["O", "B-Gene", "I-Gene"]
    torch.manual_seed(5)
    classifier = HSTLForTokenClassification(config).eval()
    with torch.no_grad():
        classifier.hstl.heads["jnlpba"].emission.weight.normal_(std=2.0)
    inputs = tester.prepare_inputs(seed=6, padding_side="right")
    row, starts = 0, inputs["word_start_positions"][0].tolist()  # the 6-word sentence
    output = classifier(input_ids=inputs["input_ids"][:1], attention_mask=inputs["attention_mask"][:1],
                        word_start_positions=inputs["word_start_positions"][:1])
    emissions = classifier.hstl.tag(inputs["input_ids"][:1], inputs["word_start_positions"][:1],
                                    inputs["attention_mask"][:1]).emissions["jnlpba"][row]
    crf = classifier.hstl.heads["jnlpba"].crf
    merged_of = [config.label2id[label] for label in config.entity_labels("jnlpba")]
    probability = torch.zeros(len(starts), config.num_labels, dtype=torch.float64)
    total = 0.0
    for sequence in itertools.product(range(len(labels)), repeat=len(starts)):
        score = crf.start_transitions[sequence[0]] + crf.end_transitions[sequence[-1]] + sum(
            emissions[word, label] for word, label in enumerate(sequence)) + sum(
            crf.transitions[previous, label] for previous, label in zip(sequence, sequence[1:]))
        weight = float(score.detach().double().exp())
        total += weight
        for word, label in enumerate(sequence):
            probability[word, merged_of[label]] += weight
    expected = (probability / total).log().float()
    torch.testing.assert_close(output.logits[row, starts], expected, atol=1e-4, rtol=1e-4)
    assert output.logits[row, starts].argmax(-1).tolist() == expected.argmax(-1).tolist()


def test_token_classification_without_word_ids_is_refused(tester, model):
    classifier = HSTLForTokenClassification(model.config).eval()
    inputs = tester.prepare_inputs(seed=1)
    with pytest.raises(ValueError, match=r"^word_ids: expected the tokenizer's word_ids\(\)"):
        classifier(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
