#!/usr/bin/env bash
# Regenerates this folder's cohort (samples.tsv, repertoires/, implanted.tsv, simulation.json) with
# `repclass simulate` (needs olga: pip install olga); see README.md. The same seed gives the same files.
# simulate replaces its whole --out folder, so it writes next to this one and the files are moved in.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d .cohort.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

repclass simulate --out "$tmp/cohort" --repertoires 40 --positives 20 --sequences 3000-5000 \
    --witness-rate 0.01 --motif SFEN --nonproductive-rate 0.02 --covariates --seed 42

rm -rf repertoires
mv "$tmp"/cohort/* .
