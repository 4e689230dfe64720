#!/usr/bin/env bash
# Continue pretraining the model shipped in the package (fastdeberta/deberta-v3-tiny-en), in chunks.
#
#   scripts/pretrain_shipped.sh            # runs until stopped (or STEPS steps); safe to kill at any time
#   OMP_NUM_THREADS=1 scripts/pretrain_shipped.sh   # on a busy machine (OpenMP spin-waits otherwise)
#   RUN=.cache/pretrain/run2 STEPS=12000 scripts/pretrain_shipped.sh   # a new phase from the committed weights
#   RUN=.cache/pretrain/run3 SEED=44 STEPS=20000 PROCS=2 scripts/pretrain_shipped.sh   # phase 3
#       (give each new phase its own SEED: the data order and the masks follow (seed, step), so a phase
#        with the previous seed re-reads the same masked batches in the same order; phase 2 used 42 too)
#   RUN=.cache/pretrain/run4 SEED=45 STEPS=11000 PROCS=2 LR=3e-4 WARMUP=500 scripts/pretrain_shipped.sh   # phase 4
#       (LR / WARMUP: the peak learning rate and the warmup steps of the new schedule; phases 1-3: 5e-4, 1000)
#   DROPOUT=0.1 scripts/pretrain_shipped.sh  # dropout while pretraining: 0 by default from phase 3 on (the model
#                                          # underfits: training and held-out MLM accuracy agree); phases 1-2 used 0.1
#   PROCS=2 scripts/pretrain_shipped.sh    # data parallel: 2 processes x 1 thread (torchrun), same global batch;
#                                          # 1.10x the tokens/s of 1 process x 2 threads on 2 idle cores here
#
# With the full training state in $RUN (same machine as before) it resumes exactly (--resume). Without
# it (a fresh machine, or a new RUN folder) it prepares the corpus if needed and starts a new schedule
# (warmup + linear decay over STEPS) from the committed weights (--init-from). Phase 1 (.cache/pretrain/run)
# ended at step 10,000. Ship the newest checkpoint with: python scripts/ship_model.py --run "$RUN"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHIPPED=fastdeberta/shipped/deberta-v3-tiny-en
RUN=${RUN:-.cache/pretrain/run}
STEPS=${STEPS:-10000}

[ -f .cache/corpus/train.txt ] || "$PY" scripts/prepare_corpus.py
start=()
if compgen -G "$RUN/checkpoint-*/trainer_state.json" >/dev/null; then
  start=(--resume)
elif [ -f "$SHIPPED/discriminator/config.json" ]; then
  start=(--init-from "$SHIPPED")
fi
PROCS=${PROCS:-1}
BATCH=32                                   # global batch; per process under torchrun
launch=("$PY")
if [ "$PROCS" -gt 1 ]; then
  launch=("$PY" -m torch.distributed.run --standalone --nproc-per-node "$PROCS")
  export OMP_NUM_THREADS=1
fi
exec nice -n "${NICE:-0}" "${launch[@]}" -m fastdeberta pretrain --objective rtd \
  --config fastdeberta/pretraining/configs/deberta-v3-tiny.json \
  --tokenizer "$SHIPPED/discriminator" \
  --corpus .cache/corpus/train.txt --valid .cache/corpus/valid.txt \
  --output "$RUN" --seq-length 128 --batch-size $((BATCH / PROCS)) --steps "$STEPS" \
  --lr "${LR:-5e-4}" --warmup "${WARMUP:-1000}" --rtd-lambda 50 --embedding-sharing gdes \
  --eval-every 200 --eval-sequences 256 --save-every 100 --keep 2 --log-every 10 --no-progress --seed "${SEED:-42}" \
  --dropout "${DROPOUT:-0}" \
  "${start[@]}" "$@"
