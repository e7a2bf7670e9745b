#!/usr/bin/env bash
# The optimal-depth study: three sweeps into ./mlflow.db (experiment
# optimal_depth), then the analysis. Jobs that already FINISHED are skipped, so
# an interrupted study resumes where it stopped. PYTHON=... picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}

# 1. Main grid: 2 datasets x 2 widths x 2 initializations x 9 depths, 4 seeds.
$PY -m depthlab +experiment=optimal_depth
# 2. Trainability over (sigma_w, depth): digits, width 16 (18 jobs reused from 1).
$PY -m depthlab +experiment=optimal_depth train.dataset=digits width=16 \
    init.sigma_w=0.5,0.75,1.0,1.1225,1.5,2.0,2.5,3.0,4.0
# 3. Budget: 4x longer training, width 16 at the critical point.
$PY -m depthlab +experiment=optimal_depth width=16 init.sigma_w=1.1225 \
    train.steps=8000
# Figures (figures/*.png) and numbers (results.md).
$PY analyze.py
