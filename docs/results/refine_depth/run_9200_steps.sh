#!/usr/bin/env bash
# refine_depth, committed design, 4x its steps (9200, one cosine schedule), seed 0: train
# (resumable: rerun the script after a stop), then a learning curve on the validation seed
# (48 scenes of seed 20 000, corrupted depth, at 2300 / 4600 / 6900 / 9200 steps) and the
# 150-scene benchmark for the final model only. Run from the repository root:
#   bash docs/results/refine_depth/run_9200_steps.sh [DIR]
set -e
D=${1:-runs/refine_depth_9200}
python -m diffcamera_jax.train --config=configs/default.py:refine_depth --workdir=$D/work \
    --config.train.num_steps=9200 --config.train.checkpoint_every=575 \
    --config.train.keep_checkpoints=17
# a stopped run (SIGTERM saves a checkpoint and exits cleanly) is resumed by running this again
[ -d $D/work/checkpoints/9200 ] || { echo "training stopped before step 9200: rerun to resume"; exit 1; }
for S in 2300 4600 6900 9200; do
  [ -f $D/val_$S/results.json ] && continue
  python -m diffcamera_jax.export --workdir $D/work --out $D/model_$S --step $S --replace
  python tools/refine_depth_check.py $D/model_$S 32 > $D/check_$S.txt
  python -m diffcamera_jax.evaluate --model $D/model_$S --num-scenes 48 --scene-seed 20000 \
      --depth-corruption all --optics-prepass off --quiet --out $D/val_$S
  python tools/summarize_results.py $D/val_$S/results.json > $D/val_$S/summary.txt
done
[ -f $D/eval_corruption/results.json ] || python -m diffcamera_jax.evaluate --model $D/model_9200 \
    --num-scenes 150 --depth-corruption all --optics-prepass off --quiet --out $D/eval_corruption
python tools/summarize_results.py $D/eval_corruption/results.json > $D/summary_depth_corruption.txt
