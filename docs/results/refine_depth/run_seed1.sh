#!/usr/bin/env bash
# refine_depth, committed design, training seed 1: train (resumable), export, evaluate under
# corrupted depth, summarise. Run from the repository root: bash docs/results/refine_depth/run_seed1.sh [DIR]
set -e
D=${1:-runs/refine_depth_seed1}
python -m diffcamera_jax.train --config=configs/default.py:refine_depth --config.seed=1 --workdir=$D/work
python -m diffcamera_jax.export --workdir $D/work --out $D/model
python -m diffcamera_jax.evaluate --model $D/model --num-scenes 150 --depth-corruption all \
    --optics-prepass off --out $D/eval_corruption
python tools/summarize_results.py $D/eval_corruption/results.json > $D/summary_depth_corruption.txt
