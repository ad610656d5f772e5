#!/usr/bin/env bash
# Study 3 in one command, from the repository root:  bash studies/study3_patients/run.sh [small|default]
#   1. the chest X-rays per image and per patient (real data);
#   2. synthetic CT volumes (written once to runs/synthetic_ct), one central slice for training,
#      10 vs 1 central slices averaged per patient for validation and test.
set -euo pipefail
variant="${1:-small}"
flag=(); [ "$variant" != default ] && flag=(--variant "$variant")
python -m train.sweep studies/study3_patients/xray.yaml "${flag[@]}"
[ -f runs/synthetic_ct/ct.yaml ] || python -m train.make_synthetic_ct runs/synthetic_ct --patients 150 --slices 32 --size 64 --hard
python -m train.sweep studies/study3_patients/ct_synthetic.yaml "${flag[@]}"
