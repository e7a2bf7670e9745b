#!/usr/bin/env bash
# The residual study: probe sweeps (part a) and training sweeps (part b) into an
# MLflow store outside the repository, then the analysis, which writes the
# figures (figures/*.png) and numbers (results.md) into this folder.
#
#   experiments/residual/run.sh                 # store in a new temporary folder
#   STORE=/tmp/residual experiments/residual/run.sh   # or a folder you choose
#
# Jobs that already FINISHED in the store are skipped, so an interrupted study
# resumes where it stopped. PYTHON=... picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
STORE=${STORE:-$(mktemp -d -t residual.XXXXXX)}
COMMON=(tracking.uri="$STORE" hydra.sweep.dir="$STORE/multirun" report=false)
echo "run.sh: MLflow store $STORE"

# (a) Gradient norms and J^(l) spectra at initialization, L = 2..1000 (log-spaced),
#     for mlp, resnet alpha = 1 and resnet alpha = 1/sqrt(blocks), each with and
#     without LN; tanh at its critical point (sigma_b = 0.05) and relu at He;
#     a linear readout (a saturated or dead readout would hide the body).
#     Width 128, 16 networks x 4 inputs, full spectra (every layer) of 1 pair.
DEPTHS=4,6,10,16,25,40,63,100,160,250,400,630,1000
PROBE=(tracking.experiment=residual_init width=128 input_dim=32
       output_activation=linear depth=$DEPTHS probe.networks=16 probe.inputs=4 probe.spectra=1 probe.threads=1 "${COMMON[@]}")
for ACT in "activation=tanh init=gaussian init.sigma_w=1.1225 init.sigma_b=0.05" \
           "activation=relu init=he_normal init.sigma_w=1.4142135623730951 init.sigma_b=0"; do
    # shellcheck disable=SC2086
    $PY -m depthlab $ACT arch=mlp arch.norm=none,layer "${PROBE[@]}"
    # shellcheck disable=SC2086
    $PY -m depthlab $ACT arch=resnet arch.norm=none,layer arch.depth_power=0,0.5 \
        "${PROBE[@]}"
done

# (b) Is there an optimal depth? tanh at the critical point (as in
#     experiments/optimal_depth), width 64, Adam lr 1e-3, batch 64, 1000 steps,
#     4 seeds, on digits and mnist, mlp against resnet with alpha = 1/sqrt(blocks).
TRAIN=(tracking.experiment=residual_train task=train activation=tanh init=gaussian
       init.sigma_w=1.1225 init.sigma_b=0.05 width=64 train.optimizer=adam
       train.learning_rate=0.001 train.batch_size=64 train.eval_every=100
       train.seeds=4 train.cost=cross_entropy hydra/launcher=joblib
       hydra.launcher.n_jobs=2 "${COMMON[@]}")
$PY -m depthlab arch=mlp,resnet arch.depth_power=0.5 train.dataset=digits,mnist \
    depth=4,6,8,12,16,24,32,48,64 train.steps=1000 "${TRAIN[@]}"
# The second budget: 3x longer, digits, every other depth.
$PY -m depthlab arch=mlp,resnet arch.depth_power=0.5 train.dataset=digits \
    depth=4,8,16,32,64 train.steps=3000 "${TRAIN[@]}"

$PY analyze.py --uri "$STORE"
