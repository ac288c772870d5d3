#!/usr/bin/env bash
# The whole job on the bundled example cohort: ingest -> train -> predict -> motifs.
# Usage: scripts/demo.sh [OUT_DIR]   (`make demo` sets up .venv first and puts it on PATH)
# DEMO_TRAIN_ARGS / DEMO_MOTIFS_ARGS add options to train / motifs (a quicker run for checks).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo_out}
mkdir -p "$out"
start=$(date +%s)

repclass ingest example_data/samples.tsv example_data/repertoires --out "$out/cohort.store" --force
repclass train "$out/cohort.store" --target status --out "$out/model" --seed 0 --force ${DEMO_TRAIN_ARGS:-}
repclass predict "$out/model" "$out/cohort.store" --out "$out/predictions.tsv" --attention 20 --force
report=$(repclass motifs "$out/model" "$out/cohort.store" --out "$out/motifs" --force ${DEMO_MOTIFS_ARGS:-})

python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
metrics = json.load(open(f"{out}/model/metrics.json"))
print(f"status ROC AUC: test {metrics['test']['status']['roc_auc']:.3f}, "
      f"validation {metrics['validation']['status']['roc_auc']:.3f} "
      f"(best model at update {metrics['best_update']})")
motifs = json.load(open(f"{out}/motifs/motifs.json"))["motifs"]
if motifs:
    top = motifs[0]
    print(f"top motif: {top['consensus']} ({top['n_sequences']} sequences in {top['n_repertoires']} held-out "
          f"repertoires; implanted: SFEN)")
PY
echo "demo finished in $(( $(date +%s) - start )) s"
echo "report: $report"
