#!/usr/bin/env bash
# The whole job on the bundled example cohort: ingest -> train -> predict -> motifs.
# Usage: scripts/demo.sh [OUT_DIR]   (run by `make demo`, which sets up .venv first)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo_out}
mkdir -p "$out"
start=$(date +%s)

repclass ingest example_data/samples.tsv example_data/repertoires --out "$out/cohort.store" --force

echo "demo finished in $(( $(date +%s) - start )) s" >&2
