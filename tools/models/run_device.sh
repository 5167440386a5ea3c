#!/bin/bash
# The whole model pipeline of issue 3 on one GPU machine, in the repository root:
#   tools/models/run_device.sh full    # what made the shipped models in data/models: committed
#                                      # tokenizer, corpus v2 (--mix v2 --reading-q 3), 600k docs,
#                                      # 290/25/45 s of training, eval 120 per skill, fixtures;
#                                      # 521 s wall on one H100 (see data/models/README.md).
#   tools/models/run_device.sh smoke   # corpus v1, 150k docs, 40/15/30 s of training, eval 30 per
#                                      # skill; trains the tokenizer too. Made the earlier models (~4 min).
# Results go to $OUT (default /tmp/out): one tar per model directory, the fixtures as a tar,
# eval.json, train_report.json and the log ($MODE.log). Unpack the tars into data/models and
# data/fixtures/models.
# Tunables (env): DOCS, BUDGETS (seconds of training for main,draft,moe), PER_SKILL, CORPUS (full only).
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
MODE=${1:-full}
OUT=${OUT:-/tmp/out}
W=/tmp/tinyllm_models
rm -rf $W; mkdir -p $W $OUT
cd "$(dirname "$0")/../.."
exec > >(tee $OUT/$MODE.log) 2>&1
date -u
nvidia-smi -L
python3 -c 'import torch, transformers, tokenizers, safetensors; print(torch.__version__, transformers.__version__, tokenizers.__version__, safetensors.__version__)'
if [ "$MODE" = smoke ]; then
  DOCS=${DOCS:-150000}; BUDGETS=${BUDGETS:-40,15,30}; PER_SKILL=${PER_SKILL:-30}
  time python3 tools/models/train_tokenizer.py --out $W/tokenizer --docs 60000 || exit 1
  tar -C $W -cf $OUT/tokenizer.tar tokenizer
  TOK=$W/tokenizer
else
  DOCS=${DOCS:-600000}; BUDGETS=${BUDGETS:-290,25,45}; PER_SKILL=${PER_SKILL:-120}
  CORPUS=${CORPUS:---mix v2 --reading-q 3}
  TOK=tools/models/tokenizer
  python3 tools/models/train_tokenizer.py --out $TOK --check-only || exit 1
fi
time python3 tools/models/train.py --tokenizer $TOK --out $W/models --models main,draft,moe \
  --budgets $BUDGETS --docs $DOCS $CORPUS --copy-to $OUT || exit 1
time python3 tools/models/evaluate.py --models-dir $W/models --per-skill $PER_SKILL --out $OUT/eval.json
time python3 tools/models/make_fixtures.py --models-dir $W/models --out $W/fixtures
tar -C $W -cf $OUT/fixtures.tar fixtures
ls -la $OUT
date -u
