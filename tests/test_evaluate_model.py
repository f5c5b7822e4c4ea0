"""hstl-evaluate (`hstl.commands.evaluate`, eval/evaluate_model.py) on the shipped sample: results.json, results.md, f1.png, error files, flags and errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from hstl.commands import evaluate as evaluate_model
from hstl.data import read_split_dir, sample_data_dir
from labels_hstl import extract_chunks


SAMPLE_CORPORA = {"BC5CDR-chem": "chem", "NCBI-disease": "disease"}
"""Sample corpus -> head of the conftest tiny model."""


def talkative_copy(model_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A copy of `model_dir` whose heads have large random emission weights, so that it predicts many mentions (the
    6-step tiny model predicts almost none, and tests of error files and entity spans need some)."""
    from hstl import HSTLModel
    from hstl.tokenization import load_tokenizer

    model = HSTLModel.from_pretrained(model_dir)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in model.heads.values():
            head.emission.weight.copy_(torch.randn(head.emission.weight.shape, generator=generator))
            head.emission.bias.copy_(torch.tensor([-1.0] + [0.5] * (head.emission.bias.numel() - 1)))
    model.save_pretrained(out_dir)
    load_tokenizer(model_dir).save_pretrained(out_dir)
    (out_dir / "run_config.yaml").write_text((model_dir / "run_config.yaml").read_text())
    return out_dir


@pytest.fixture(scope="module")
def talkative_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return talkative_copy(tiny_model_dir, tmp_path_factory.mktemp("talkative_model"))


def _task_map_args() -> list[str]:
    return ["--task_map", *(f"{corpus}={head}" for corpus, head in SAMPLE_CORPORA.items())]


@pytest.fixture(scope="module")
def evaluation_dir(talkative_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluation")
    argv = ["--model", str(talkative_model_dir), "--data_root", str(sample_data_dir()), "--corpora",
            *SAMPLE_CORPORA, *_task_map_args(), "--splits", "validation", "test", "--output_dir", str(out), "--cpu"]
    assert evaluate_model.run(argv) == 0
    return out


def _gold_mentions(sentences) -> int:
    return sum(len(extract_chunks(sentence.labels)) for sentence in sentences)


def test_results_json_counts_match_the_gold_files_and_error_files(evaluation_dir):
    results = json.loads((evaluation_dir / "results.json").read_text())
    assert {corpus: sorted(by_split) for corpus, by_split in results.items()} == {
        corpus: ["test", "validation"] for corpus in SAMPLE_CORPORA
    }
    for corpus in SAMPLE_CORPORA:
        splits = read_split_dir(sample_data_dir() / corpus)
        for split in ("validation", "test"):
            scores = results[corpus][split]
            assert scores["num_gold"] == _gold_mentions(splits[split])
            assert scores["num_pred"] > 0, "the talkative model should predict mentions"
            records = [json.loads(line) for line in
                       (evaluation_dir / "errors" / f"{corpus}.{split}.jsonl").read_text().splitlines()]
            false_positives = [record for record in records if record["kind"] == "false_positive"]
            false_negatives = [record for record in records if record["kind"] == "false_negative"]
            assert len(false_positives) == scores["num_pred"] - scores["num_correct"]
            assert len(false_negatives) == scores["num_gold"] - scores["num_correct"]
            for record in records:
                sentence = splits[split][record["sentence"]]
                assert record["line"] == sentence.line
                assert record["sentence_text"] == " ".join(sentence.tokens)
                assert record["text"] == " ".join(sentence.tokens[record["start"]:record["end"]])
            for record in false_negatives:
                chunk = (record["type"], record["start"], record["end"])
                assert chunk in extract_chunks(splits[split][record["sentence"]].labels)


def test_markdown_table_and_png(evaluation_dir):
    results = json.loads((evaluation_dir / "results.json").read_text())
    table = (evaluation_dir / "results.md").read_text()
    for corpus, head in SAMPLE_CORPORA.items():
        for split in ("validation", "test"):
            f1 = f"{results[corpus][split]['f1']:.4f}"
            assert any(line.startswith(f"| {corpus} | {head} | {split} |") and f"| {f1} |" in line
                       for line in table.splitlines()), (corpus, split)
    mean_validation = sum(results[corpus]["validation"]["f1"] for corpus in SAMPLE_CORPORA) / len(SAMPLE_CORPORA)
    assert f"| mean (2 corpora) | | validation | | | {mean_validation:.4f} |" in table
    assert (evaluation_dir / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_mode_reads_corpora_like_training_and_skips_the_plot(talkative_model_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {encoder_config: {model_type: xlnet}}\n"
        "tasks:\n"
        "  - {name: chem, family: chemical, data_dir: 'sample:BC5CDR-chem', max_train_sentences: 5}\n"
        "  - {name: disease, family: disease, data_dir: 'sample:NCBI-disease'}\n"
        "training: {max_length: 40, window_overlap: 8}\n"
    )
    out = tmp_path / "out"
    argv = ["--model", str(talkative_model_dir), "--config", str(config), "--splits", "validation", "--output_dir",
            str(out), "--no_plot", "--cpu"]
    assert evaluate_model.run(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["chem", "disease"] and all(list(by_split) == ["validation"] for by_split in results.values())
    assert results["chem"]["validation"]["num_gold"] == _gold_mentions(read_split_dir(sample_data_dir() / "BC5CDR-chem")
                                                                  ["validation"])
    assert not (out / "f1.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--corpora", "BC5CDR-chem"], "--task_map: expected a head of the model (['chem', 'disease'])"),
    (["--corpora", "no-such-corpus"], "--corpora: expected corpora among"),
    (["--corpora", "BC5CDR-chem", "--task_map", "BC5CDR-chem"], "--task_map: expected CORPUS=HEAD, got 'BC5CDR-chem'"),
    (["--corpora", "BC5CDR-chem", "--task_map", "BC5CDR-chem=gene"], "for every corpus, got none for ['BC5CDR-chem']"),
    (["--corpora", "BC5CDR-chem", "--task_map", "BC5CDR-chem=chem", "NCBI-disease=disease"],
     "--task_map: expected corpora that are scored (['BC5CDR-chem']), got ['NCBI-disease']"),
])
def test_bad_flags_exit_2_naming_the_flag(tiny_model_dir, tmp_path, capsys, extra, message):
    argv = ["--model", str(tiny_model_dir), "--data_root", str(sample_data_dir()), "--output_dir", str(tmp_path),
            "--no_plot", *extra]
    with pytest.raises(SystemExit) as exit_info:
        evaluate_model.run(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_missing_split_and_missing_model_are_one_line_errors(tiny_model_dir, tmp_path, capsys):
    data_root = tmp_path / "data"
    (data_root / "BC5CDR-chem").mkdir(parents=True)
    (data_root / "BC5CDR-chem" / "devel.tsv").write_text("Aspirin\tB-Chemical\n\n")
    argv = ["--model", str(tiny_model_dir), "--data_root", str(data_root), "--task_map", "BC5CDR-chem=chem",
            "--output_dir", str(tmp_path / "out"), "--no_plot"]
    assert evaluate_model.run_cli(lambda: evaluate_model.run(argv)) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "BC5CDR-chem" in error and "['test']" in error and "\n" not in error
    assert evaluate_model.run_cli(lambda: evaluate_model.run([*argv, "--splits", "validation", "--max_length", "2"])) == 2
    assert "--overlap: expected an int with 0 <= --overlap < --max_length // 2 = 1, got " in capsys.readouterr().err
    argv[1] = str(tmp_path / "no-model")
    assert evaluate_model.run_cli(lambda: evaluate_model.run(argv)) == 2
    assert "no-model': no such folder, and not a valid Hub id" in capsys.readouterr().err


def test_bad_batch_tokens_is_a_one_line_error_before_any_work(tiny_model_dir, tmp_path, capsys):
    argv = ["--model", str(tiny_model_dir), "--data_root", str(sample_data_dir()), "--corpora", "BC5CDR-chem",
            "--task_map", "BC5CDR-chem=chem", "--splits", "test", "--output_dir", str(tmp_path), "--no_plot",
            "--batch_tokens", "0"]
    assert evaluate_model.run_cli(lambda: evaluate_model.run(argv)) == 2
    assert "--batch_tokens: expected a positive number of sub-tokens, got 0" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_missing_matplotlib_is_a_clear_error_before_any_work(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    argv = ["--model", str(tiny_model_dir), "--data_root", str(sample_data_dir()), "--output_dir", str(tmp_path),
            *_task_map_args()]
    with pytest.raises(SystemExit) as exit_info:
        evaluate_model.run(argv)
    assert exit_info.value.code == 2
    assert "pip install 'hstl[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def opinionated_copy(model_dir: Path, out_dir: Path, label_of_head: dict[str, str]) -> Path:
    """A copy of `model_dir` whose head H tags every word `label_of_head[H]`, whatever the input (the emission bias of
    that label dwarfs everything else), so that which head scored a corpus shows in its scores."""
    from hstl import HSTLModel
    from hstl.tokenization import load_tokenizer

    model = HSTLModel.from_pretrained(model_dir)
    with torch.no_grad():
        for head_name, label in label_of_head.items():
            emission = model.heads[head_name].emission
            emission.weight.zero_()
            emission.bias.fill_(-1000.0)
            emission.bias[model.config.task_label2id(head_name)[label]] = 1000.0
    model.save_pretrained(out_dir)
    load_tokenizer(model_dir).save_pretrained(out_dir)
    (out_dir / "run_config.yaml").write_text((model_dir / "run_config.yaml").read_text())
    return out_dir


def test_each_corpus_is_scored_with_its_own_head(tiny_model_dir, tmp_path):
    model_dir = opinionated_copy(tiny_model_dir, tmp_path / "model", {"chem": "O", "disease": "B-Disease"})
    out = tmp_path / "out"
    argv = ["--model", str(model_dir), "--data_root", str(sample_data_dir()), "--corpora", *SAMPLE_CORPORA,
            *_task_map_args(), "--splits", "validation", "--output_dir", str(out), "--no_plot", "--cpu"]
    assert evaluate_model.run(argv) == 0
    results = json.loads((out / "results.json").read_text())
    # chem (all "O") finds nothing in BC5CDR-chem; disease ("B-Disease" everywhere) makes every word of NCBI-disease
    # a one-word mention.
    assert results["BC5CDR-chem"]["validation"]["num_pred"] == 0
    ncbi_words = sum(len(sentence.tokens) for sentence in read_split_dir(sample_data_dir() / "NCBI-disease")["validation"])
    assert results["NCBI-disease"]["validation"]["num_pred"] == ncbi_words > 0


@pytest.mark.parametrize("batch_tokens", [None, 256])
def test_quantize_int8_scores_what_predict_int8_tags(talkative_model_dir, evaluation_dir, tmp_path, batch_tokens):
    """`--quantize int8` scores the int8 model: the same numbers as predict.py --quantize int8's CoNLL output scored
    against the gold file (hstl-score's path), and not those of the fp32 evaluation (the model's large random
    emission weights make int8 rounding change some labels). Dynamic int8 quantization scales each batch as a whole,
    so this holds only if evaluation batches the windows exactly as predict.py does: by default (the file is one
    piece), and with 256 tokens per batch, where predict.py cuts the file into pieces of 4 KiB and batches within
    each."""
    from hstl.evaluation import score_files
    from hstl.inference.streaming import PredictionOptions, predict_file

    out = tmp_path / "int8"
    batching = ["--batch_tokens", str(batch_tokens)] if batch_tokens else []
    argv = ["--model", str(talkative_model_dir), "--data_root", str(sample_data_dir()), "--corpora", "BC5CDR-chem",
            "--task_map", "BC5CDR-chem=chem", "--splits", "test", "--output_dir", str(out), "--no_plot", "--cpu",
            "--quantize", "int8", *batching]
    assert evaluate_model.run(argv) == 0
    int8 = json.loads((out / "results.json").read_text())["BC5CDR-chem"]["test"]
    gold = sample_data_dir() / "BC5CDR-chem" / "test.tsv"
    predict_file(talkative_model_dir, gold, tmp_path / "int8.pred.tsv",
                 PredictionOptions(tasks=["chem"], cpu=True, quantize="int8", show_progress=False,
                                   **({"batch_tokens": batch_tokens} if batch_tokens else {})))
    assert int8 == score_files(gold, tmp_path / "int8.pred.tsv").result()
    fp32 = json.loads((evaluation_dir / "results.json").read_text())["BC5CDR-chem"]["test"]
    assert int8 != fp32


def test_two_processes_score_what_one_process_scores(talkative_model_dir, evaluation_dir, tmp_path):
    """`accelerate launch` with 2 processes and 1,024 tokens per batch: each tags its share of the batches (an odd
    number of them for some splits, so the shares are uneven) and gets every window's labels back once; results.json
    and the error files are those of one process with the default batches (on the CPU, fp32 labels do not depend on
    the batches: a window is padded alike in any of them)."""
    import os
    import subprocess

    from hstl.inference.loading import load_model_and_tokenizer, window_settings
    from hstl.inference.tagging import build_task_dataset, window_batches

    _, tokenizer = load_model_and_tokenizer(talkative_model_dir)
    settings = window_settings(talkative_model_dir)
    num_batches = [len(window_batches(build_task_dataset(tokenizer, sentences, None, 0, settings.max_length,
                                                         settings.overlap), 1024))
                   for corpus in SAMPLE_CORPORA for split, sentences in read_split_dir(sample_data_dir() / corpus).items()
                   if split in ("validation", "test")]
    assert any(count % 2 for count in num_batches), num_batches
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACCELERATE_", "LOCAL_RANK"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = tmp_path / "two"
    # Without a GPU, `--multi_gpu --num_processes 2` starts 2 gloo CPU processes (`--cpu` would start only one).
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29541",
         str(Path(__file__).resolve().parents[1] / "eval" / "evaluate_model.py"), "--model", str(talkative_model_dir),
         "--data_root", str(sample_data_dir()), "--corpora", *SAMPLE_CORPORA, *_task_map_args(), "--splits",
         "validation", "test", "--output_dir", str(out), "--no_plot", "--cpu", "--batch_tokens", "1024"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert json.loads((out / "results.json").read_text()) == json.loads((evaluation_dir / "results.json").read_text())
    for errors in sorted((evaluation_dir / "errors").iterdir()):
        assert (out / "errors" / errors.name).read_text() == errors.read_text(), errors.name
