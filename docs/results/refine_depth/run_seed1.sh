#!/usr/bin/env bash
# refine_depth, committed design, training seed 1: train (resumable), export, evaluate corrupted depth.
cd /work/main
PY=.venv/bin/python
D=/work/runs/refine3_s1
$PY -m diffcamera_jax.train --config=configs/default.py:refine_depth --config.seed=1 --workdir=$D/work > $D/train.log 2>&1 || exit 1
$PY -m diffcamera_jax.export --workdir $D/work --out $D/model > $D/export.log 2>&1 || exit 1
$PY -m diffcamera_jax.evaluate --model $D/model --num-scenes 150 --depth-corruption all --optics-prepass off --out $D/eval_corruption > $D/eval.log 2>&1 || exit 1
$PY tools/summarize_results.py $D/eval_corruption/results.json > $D/summary.txt
echo done > $D/DONE
