#!/usr/bin/env python
"""Fetch, convert and cross-validate public, labelled, real TCR-beta repertoire cohorts.

Cohorts of human peripheral-blood TCR-beta repertoires, pinned to a commit of their
repository (docs/real-data.md has the sources, licences and results):

- `aging` (github.com/mikessh/vdjtools-examples, aging_lite/): 41 repertoires of 39 healthy
  donors aged 6-90 (Britanova et al., J Immunol 2014), each down-sampled to 10,000 clonotypes by
  the VDJtools authors; VDJtools clonotype tables, which `repclass ingest` reads as they are.
  Label `age_group`: `old` (age >= 50) vs `young`. Two donors were sequenced twice (replicas, as
  aging/metadata.txt says): their repertoires share a `subject_id` and stay in one fold.
- `ms` (github.com/immunomind/immunarch, data/immdata.rda): 12 repertoires, 6 children with
  multiple sclerosis and 6 healthy children and young adults, down-sampled to about 6,000
  clonotypes (immunarch's `immdata`, from the same study as the VDJtools MS example). Label
  `status`: `MS` vs `C`. Sequencing lane is confounded with the label (controls in lanes A and B,
  patients in lane C). Reading the .rda file needs `pip install rdata` (fetch only).
- `gica`, `luca`, `thca` (github.com/Bioinformatics7181/DeepLION2, Data/Geneplus/): 151
  gastrointestinal, 184 lung and 170 thyroid cancer patients' repertoires (85 thyroid patients
  twice), each against the same 260 healthy donors: 411, 444 and 430 repertoires of frequencies
  only (no counts, no J gene). Label `status`: `cancer` vs `healthy`. `fetch` reads them from a
  local copy of the repository (`--from-git gica=GIT_DIR`); only `gica` has one processing for
  both classes (docs/real-data.md, "Larger cohorts").

Usage (nothing here runs at test time):

    python scripts/real_cohorts.py fetch --out real/                  # download (needs internet)
    python scripts/real_cohorts.py fetch --out real/ --from-git aging=CLONE1 --from-git ms=CLONE2
    python scripts/real_cohorts.py run --cohort ms --data real/ --out real_runs/ms
    python scripts/real_cohorts.py summarise real_runs/ms
    python scripts/real_cohorts.py kmer-check real_runs/ms   # the k-mer baseline's spread and null
    python scripts/real_cohorts.py fetch --out real/ --cohort gica --from-git gica=DeepLION2/.git
    python scripts/real_cohorts.py run --cohort gica --data real/ --out real_runs/gica --method kmer --method burden
    python scripts/real_cohorts.py stats-check real_runs/gica  # richness, entropy, clonality, top clone

`run` ingests the cohort, writes K subject-grouped, label-stratified folds as split columns
(fold k: test = group k, validation = group k+1, training = the rest, as `train --folds` does,
but keeping every subject's repertoires together), trains DeepRC, the k-mer and the burden
baselines on each fold (`repclass.comparison.train_methods`), and writes `summary.tsv`: per method,
the test ROC AUC of each fold and of the pooled out-of-fold predictions.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

#: cohort: (repository, pinned commit, label column, positive class)
COHORTS = {
    "aging": ("mikessh/vdjtools-examples", "c2b19d718ee1d2d6b0c161d54e4fff51b60c61db", "age_group", "old"),
    "ms": ("immunomind/immunarch", "0b6544a101e9f42ee1bf6a5f14cbd234147e18ad", "status", "MS"),
    **{name: ("Bioinformatics7181/DeepLION2", "ebc5aeb680935044860606802a6d552a89d94925", "status", "cancer")
       for name in ("gica", "luca", "thca")},
}
#: DeepLION2's Geneplus cohorts: folder under Data/Geneplus/ of the repository.
GENEPLUS = {"gica": "GICA", "luca": "LUCA", "thca": "THCA"}
#: aging/metadata.txt marks these repertoires as replicas of the one before (same donor).
REPLICAS = {"A4-i190": "A4-i189", "A3-i151": "A3-i150"}
log = logging.getLogger("real_cohorts")


# ---- fetch ----------------------------------------------------------------------------------------
def _read(cohort: str, path: str, clone: Path | None) -> bytes:
    repository, commit, _, _ = COHORTS[cohort]
    if clone is not None:
        return subprocess.run(["git", "-C", str(clone), "show", f"{commit}:{path}"], check=True,
                              capture_output=True).stdout
    url = f"https://raw.githubusercontent.com/{repository}/{commit}/{path}"
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (a fixed https URL)
        return response.read()


def _metadata_rows(text: str) -> list[list[str]]:
    """Rows of a VDJtools metadata file, comments (including commented-out samples) dropped."""
    return [line.split("\t") for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _write_sheet(folder: Path, label: str, rows: list[list[str]]) -> None:
    header = ["sample_id", "subject_id", "file", label, "sex", "age", "lane"]
    (folder / "samples.tsv").write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))


def fetch_aging(out: Path, clone: Path | None) -> list[str]:
    folder = out / "aging"
    (folder / "repertoires").mkdir(parents=True, exist_ok=True)
    sums, sheet = [], []
    for row in _metadata_rows(_read("aging", "aging_lite/metadata.txt", clone).decode()):
        file_name, sample_id, sex, age = row[0], row[1], row[2], int(row[3])  # file_name sample_id sex age
        data = _read("aging", f"aging_lite/{file_name}", clone)
        (folder / "repertoires" / file_name).write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  aging/repertoires/{file_name}")
        subject = REPLICAS.get(sample_id, sample_id)
        sheet.append([sample_id, subject, file_name, "old" if age >= 50 else "young", sex, str(age), ""])
    _write_sheet(folder, "age_group", sheet)
    return sums


def fetch_ms(out: Path, clone: Path | None) -> list[str]:
    """immunarch's immdata (an R list of data frames) -> one AIRR TSV per repertoire."""
    import gzip
    import tempfile

    import rdata  # pip install rdata: only this step needs it

    data = _read("ms", "data/immdata.rda", clone)
    with tempfile.NamedTemporaryFile(suffix=".rda") as handle:
        handle.write(data)
        handle.flush()
        immdata = rdata.conversion.convert(rdata.parser.parse_file(handle.name))["immdata"]
    folder = out / "ms"
    (folder / "repertoires").mkdir(parents=True, exist_ok=True)
    sums = [f"{hashlib.sha256(data).hexdigest()}  ms/immdata.rda (immunarch)"]
    sheet = []
    for _, row in immdata["meta"].iterrows():
        sample = str(row["Sample"])
        table = immdata["data"][sample]
        lines = ["sequence_id\tjunction_aa\tv_call\tj_call\tduplicate_count"]
        columns = zip(table["CDR3.aa"], table["V.name"], table["J.name"], table["Clones"])
        for index, (junction, v_call, j_call, count) in enumerate(columns):
            lines.append(f"{sample}_{index}\t{junction}\t{v_call}\t{j_call}\t{int(count)}")
        file_name = f"{sample}.tsv.gz"
        payload = ("\n".join(lines) + "\n").encode()
        (folder / "repertoires" / file_name).write_bytes(gzip.compress(payload, mtime=0))
        sums.append(f"{hashlib.sha256(payload).hexdigest()}  ms/repertoires/{sample}.tsv (uncompressed)")
        age = "" if row["Age"] != row["Age"] else str(int(row["Age"]))
        sheet.append([sample, sample, file_name, str(row["Status"]), str(row["Sex"]), age, str(row["Lane"])])
    _write_sheet(folder, "status", sheet)
    return sums


def _geneplus_files(clone: Path, folder: str) -> list[str]:
    commit = COHORTS["gica"][1]
    listing = subprocess.run(["git", "-C", str(clone), "ls-tree", "-r", "--name-only", commit,
                              f"Data/Geneplus/{folder}/"], check=True, capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.endswith("_processed_TCRD.tsv")]


def fetch_geneplus(cohort: str, out: Path, clone: Path | None) -> list[str]:
    """DeepLION2's Geneplus cohort (cancer vs the same 260 healthy donors) -> one TSV per repertoire.

    Each file of the repository holds one repertoire's productive TRB clonotypes as
    `amino_acid v_gene frequency caTCR_score`: no clone counts, no J gene. The conversion keeps
    the junction, the V call and the frequency (repclass turns frequencies into counts when it
    reads them, docs/real-data.md) and drops `caTCR_score`, the output of DeepLION's pretrained
    TCR classifier (trained on cancer-associated TCRs, so a label-derived feature). The file name
    says the class (negative_/positive_) and how the repertoire was processed before (`_random`,
    `_random.VJ_edit`, neither): the `processing` column keeps it, since in `luca` and `thca` it
    differs between the classes. Two files whose names differ only by `_random.VJ_edit` (85 thca
    patients) share a `subject_id`. The repository's own five-part split (Data/Geneplus/X/0-4) is
    kept as `deeplion2_part` and not used.
    """
    import gzip

    if clone is None:
        raise ValueError(f"{cohort}: give a local copy of {COHORTS[cohort][0]} with --from-git {cohort}=GIT_DIR "
                         "(its 1,285 files are not fetched one by one)")
    folder = out / cohort
    (folder / "repertoires").mkdir(parents=True, exist_ok=True)
    sums, sheet = [], []
    for path in _geneplus_files(clone, GENEPLUS[cohort]):
        part, name = path.split("/")[-2], path.split("/")[-1]
        kind, _, rest = name.partition("_")
        sample = rest.removesuffix("_processed_TCRD.tsv").removesuffix(".tsv")
        processing = ("random.VJ_edit" if sample.endswith("_random.VJ_edit") else "random" if sample.endswith("_random")
                      else "other")
        data = _read(cohort, path, clone)
        lines = data.decode().splitlines()
        header = lines[0].split("\t")
        if header[:3] != ["amino_acid", "v_gene", "frequency"]:
            raise ValueError(f"{path}: unexpected header {header}")
        payload = ("junction_aa\tv_call\tfrequency\n"
                   + "".join("\t".join(line.split("\t")[:3]) + "\n" for line in lines[1:] if line.strip())).encode()
        file_name = f"{sample}.tsv.gz"
        (folder / "repertoires" / file_name).write_bytes(gzip.compress(payload, mtime=0))
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {cohort}/{path} (DeepLION2)")
        sheet.append([sample, sample, file_name, "cancer" if kind == "positive" else "healthy", processing, part])
    # thca holds 85 patients twice, as X-TRB1 and X-TRB1_random.VJ_edit (other clonotypes, same
    # name): such pairs share a subject, so that they always fall into one fold.
    stems = [row[0].removesuffix("_random.VJ_edit") for row in sheet]
    for row, stem in zip(sheet, stems):
        if stems.count(stem) > 1:
            row[1] = stem
    sheet.sort()
    header = ["sample_id", "subject_id", "file", "status", "processing", "deeplion2_part"]
    (folder / "samples.tsv").write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in sheet))
    return sums


def fetch(out: Path, clones: dict[str, Path], cohorts: list[str]) -> None:
    """Write OUT/<cohort>/samples.tsv and OUT/<cohort>/repertoires/, and OUT/SHA256SUMS."""
    out.mkdir(parents=True, exist_ok=True)
    sums = []
    for cohort in cohorts:
        if cohort in GENEPLUS:
            sums += fetch_geneplus(cohort, out, clones.get(cohort))
        else:
            sums += {"aging": fetch_aging, "ms": fetch_ms}[cohort](out, clones.get(cohort))
        log.info("%s: written to %s", cohort, out / cohort)
    sums_file = out / "SHA256SUMS"  # other cohorts' lines, from an earlier fetch, stay
    kept = [line for line in (sums_file.read_text().splitlines() if sums_file.exists() else [])
            if line.split("  ", 1)[-1].split("/", 1)[0] not in cohorts]
    sums_file.write_text("\n".join(kept + sums) + "\n")


# ---- folds ----------------------------------------------------------------------------------------
def grouped_folds(subjects: dict[str, str], labels: dict[str, str], k: int, seed: int) -> list[dict[str, str]]:
    """K assignments {sample: train/validation/test}; subjects stay whole, labels stratified.

    Per label, subjects (shuffled by the seed, larger first) go to the group holding the fewest
    repertoires of that label, then the fewest in all; fold i tests on group i, validates on group
    i+1 and trains on the rest."""
    import numpy as np

    rng = np.random.default_rng(seed)
    subject_label: dict[str, str] = {}
    size: dict[str, int] = {}
    for sample, subject in subjects.items():
        subject_label.setdefault(subject, labels[sample])
        size[subject] = size.get(subject, 0) + 1
    group_of: dict[str, int] = {}
    total = [0] * k
    for label in sorted(set(subject_label.values())):
        members = sorted(s for s, v in subject_label.items() if v == label)
        shuffled = [members[i] for i in rng.permutation(len(members))]
        in_label = [0] * k
        for subject in sorted(shuffled, key=lambda s: -size[s]):  # stable: shuffled order among equals
            group = min(range(k), key=lambda g: (in_label[g], total[g], g))
            group_of[subject] = group
            in_label[group] += size[subject]
            total[group] += size[subject]
    folds = []
    for i in range(k):
        split = {}
        for sample, subject in subjects.items():
            group = group_of[subject]
            split[sample] = "test" if group == i else "validation" if group == (i + 1) % k else "train"
        folds.append(split)
    return folds


# ---- run ------------------------------------------------------------------------------------------
#: `run --implant RATE`: the accuracy grid's reference cell (benchmarks/studies/accuracy.py, `w0.1%`) but
#: for the rate: three random motifs of length 4-5 with gaps and substitutions, broken copies in
#: the negatives at the same rate, the motifs' own occurrences purged from the repertoires.
IMPLANT = dict(random_motifs=3, random_motif_length=(4, 5), gap_probability=0.5, substitution_probability=0.1,
               purge_background=True, motifs=())


def implanted_sheet(sheet, real_store: Path, out: Path, rate: float, seed: int):
    """Implant a known signal into the cohort's own repertoires, kept whole (`repclass simulate
    --background STORE --keep-repertoires`): half of them, drawn by the seed, become positives.
    Returns the sheet with `status` (+/-) from the simulation and `file` pointing at the implanted
    repertoires; the subjects (and the real label, unused) stay."""
    import polars as pl

    from repclass.simulation.run import SimulationConfig, simulate_cohort

    simulated = simulate_cohort(out / "implanted", SimulationConfig(
        background_store=real_store, whole_repertoires=True, witness_rate=rate, noise_rate=rate, seed=seed,
        **IMPLANT), force=True)
    ids = sheet["sample_id"]
    return sheet.with_columns(  # (the positives are the repertoires with a witness rate)
        pl.Series("status", ["+" if s in simulated.witness_rates else "-" for s in ids]),
        pl.Series("file", [str((simulated.repertoire_dir / f"{s}.tsv.gz").resolve()) for s in ids]))


#: What `run` trains on each fold unless `--method` says otherwise.
RUN_METHODS = ("deeprc", "kmer", "burden")


def run(cohort: str, data: Path, out: Path, folds: int, seed: int, updates: int, device: str,
        overrides: dict | None = None, model_overrides: dict | None = None, implant: float | None = None,
        methods: list[str] | None = None) -> None:
    import polars as pl

    from repclass import ingest
    from repclass.comparison import train_method, train_methods
    from repclass.config import ModelConfig, TrainConfig
    from repclass.training.splits import SplitSpec
    from repclass.targets import TargetSpec

    label, positive = COHORTS[cohort][2], COHORTS[cohort][3]
    sheet = pl.read_csv(data / cohort / "samples.tsv", separator="\t", infer_schema=False)
    # The MS sample ids (C1, MS1, ...) are not the file names: the sheet's file column says which.
    sheet = sheet.with_columns(pl.Series("file", [str((data / cohort / "repertoires" / f).resolve())
                                                  for f in sheet["file"]]))
    out.mkdir(parents=True, exist_ok=True)
    if implant is not None:
        sheet.write_csv(out / "real_sheet.tsv", separator="\t")
        ingest(out / "real_sheet.tsv", out / "real.store", force=True)
        sheet = implanted_sheet(sheet, out / "real.store", out, implant, seed)
        label, positive = "status", "+"
    subjects = dict(zip(sheet["sample_id"], sheet["subject_id"]))
    labels = dict(zip(sheet["sample_id"], sheet[label]))
    assignments = grouped_folds(subjects, labels, folds, seed)
    sheet = sheet.with_columns(*[pl.Series(f"fold_{i + 1}", [a[s] for s in sheet["sample_id"]])
                                 for i, a in enumerate(assignments)])
    sheet.drop("file").write_csv(out / "samples_with_folds.tsv", separator="\t")
    sheet.write_csv(out / "sheet.tsv", separator="\t")
    store = ingest(out / "sheet.tsv", out / "cohort.store", force=True)
    config = TrainConfig(**{"max_updates": updates, "eval_every": max(updates // 20, 10), "patience": 10, "seed": seed,
                            **(overrides or {})})
    model_config = ModelConfig(**(model_overrides or {}))
    chosen = list(methods or RUN_METHODS)
    for i in range(1, folds + 1):
        target = out / f"fold_{i}"
        todo = [m for m in chosen if not (target / m / "predictions.tsv").exists()]
        if not todo:
            log.info("fold %d already done", i)
            continue
        settings = dict(targets=[TargetSpec(label, positive=positive)], split=SplitSpec(column=f"fold_{i}"),
                        config=config, model_config=model_config, device=device)
        if (target / "comparison.tsv").exists():  # a method added to a finished fold (`--method`)
            for method in todo:
                train_method(method, store, target / method, force=True, **settings)
        else:
            train_methods(store, target, todo, force=True, **settings)
    summarise(out)


def summarise(out: Path) -> None:
    """summary.tsv: per method, each fold's test ROC AUC, the pooled out-of-fold ROC AUC with a
    stratified bootstrap 95% interval over repertoires, and its difference from the k-mer
    baseline's with a paired bootstrap 95% interval."""
    import numpy as np
    import polars as pl

    from repclass.metrics import paired_auc_difference, roc_auc, roc_auc_interval

    rows, pooled_scores = [], {}
    folds = sorted((p for p in out.glob("fold_*") if (p / "comparison.tsv").exists()),
                   key=lambda p: int(p.name.split("_")[1]))
    methods = sorted({m.name for f in folds for m in f.iterdir() if (m / "predictions.tsv").exists()})
    for method in methods:
        tests = []
        for fold in folds:
            predictions = pl.read_csv(fold / method / "predictions.tsv", separator="\t", infer_schema=False)
            tests.append(predictions.filter(pl.col("split") == "test"))
        pooled = pl.concat(tests, how="diagonal").sort("sample_id")  # one order for every method
        probability = [c for c in pooled.columns if ":p(" in c][0]
        label_column = [c for c in pooled.columns if c.endswith(":label")][0]
        positive = probability.split(":p(")[1].rstrip(")")
        per_fold = [roc_auc(np.array(t[label_column].to_list()) == positive, t[probability].cast(pl.Float64).to_numpy())
                    for t in tests]
        truth = np.array(pooled[label_column].to_list()) == positive
        scores = pooled[probability].cast(pl.Float64).to_numpy()
        pooled_auc, low, high = roc_auc_interval(truth, scores)
        pooled_scores[method] = (pooled["sample_id"].to_list(), truth, scores)
        finite = [a for a in per_fold if a == a]
        rows.append({"method": method, "n_test": pooled.height, "pooled_roc_auc": round(pooled_auc, 3),
                     "pooled_ci95": f"[{low:.3f}, {high:.3f}]",
                     "fold_mean_roc_auc": round(float(np.mean(finite)), 3) if finite else None,
                     "fold_sd_roc_auc": round(float(np.std(finite, ddof=1)), 3) if len(finite) > 1 else None,
                     "per_fold": " ".join(f"{a:.2f}" for a in per_fold)})
    if "kmer" in pooled_scores:
        kmer_samples, truth, kmer_scores = pooled_scores["kmer"]
        for row in rows:
            samples, _, scores = pooled_scores[row["method"]]
            if row["method"] == "kmer" or samples != kmer_samples:
                continue
            difference, low, high = paired_auc_difference(truth, scores, kmer_scores)
            row["minus_kmer"] = f"{difference:+.2f} [{low:+.2f}, {high:+.2f}]"
    table = pl.DataFrame(rows)
    table.write_csv(out / "summary.tsv", separator="\t")
    print(table)


class FinishedRun(NamedTuple):
    """What the checks need from a finished `run` folder."""

    store: Any  # repclass.io.store.Store
    label: str
    positive: str
    seed: int  # the run's TrainConfig seed (DeepRC's, and the k-mer baseline's inner CV)
    subjects: dict[str, str]  # sample -> subject
    folds: list[dict[str, str]]  # per fold: sample -> train / validation / test

    def outcomes(self):
        """1 for a repertoire of the positive class, 0 otherwise, in store order: (n,) int array."""
        import numpy as np

        labels = self.store.labels(self.label)
        return np.array([int(labels[s] == self.positive) for s in self.store.sample_ids])

    def rows(self, fold: dict[str, str]):
        """(training rows, test rows) of one fold, as store-order positions (as `train` orders them)."""
        import numpy as np

        ids = self.store.sample_ids
        return (np.array([i for i, s in enumerate(ids) if fold[s] == "train"]),
                np.array([i for i, s in enumerate(ids) if fold[s] == "test"]))


def finished_run(out: Path) -> FinishedRun:
    import polars as pl

    from repclass.io.store import Store

    for needed in (out / "fold_1" / "kmer" / "config.json", out / "samples_with_folds.tsv", out / "cohort.store"):
        if not needed.exists():
            raise ValueError(f"{out}: not a finished `run` folder (no {needed.relative_to(out)})")
    fitted = json.loads((out / "fold_1" / "kmer" / "config.json").read_text())
    sheet = pl.read_csv(out / "samples_with_folds.tsv", separator="\t", infer_schema=False)
    fold_columns = sorted((c for c in sheet.columns if c.startswith("fold_")), key=lambda c: int(c.split("_")[1]))
    return FinishedRun(store=Store.open(out / "cohort.store"), label=fitted["targets"][0]["column"],
                       positive=fitted["targets"][0]["classes"][1], seed=fitted["train"]["seed"],
                       subjects=dict(zip(sheet["sample_id"], sheet["subject_id"])),
                       folds=[dict(zip(sheet["sample_id"], sheet[c])) for c in fold_columns])


# ---- kmer-check -----------------------------------------------------------------------------------
def kmer_check(finished: FinishedRun, seeds: int, permutations: int) -> dict:
    """How far the k-mer baseline's pooled out-of-fold ROC AUC is from chance and from itself.

    Refits the baseline (repclass's k-mer regression, default settings, training repertoires in
    store order as `train` gives them) on the same folds: once per inner-CV seed 0..seeds-1 (its
    spread: the penalty is chosen by an inner cross-validation, which on a few dozen repertoires
    moves the result), and `permutations` times with the labels permuted across subjects at the
    run's seed `finished.seed` (the null: what the same pipeline scores on labels that carry no signal). A
    permutation that leaves a fold's training or test repertoires with one class is drawn again.
    Returns {"observed", "seeds": [AUC per seed], "null": [AUC per permutation], "p"}.
    """
    import numpy as np

    from repclass.baselines.features import kmer_features, select_columns
    from repclass.baselines.kmer import KmerConfig, fit_kmer
    from repclass.metrics import roc_auc
    from repclass.targets import Target

    settings = KmerConfig()
    store, subjects, run_seed = finished.store, finished.subjects, finished.seed
    ids = store.sample_ids
    target = Target(column=finished.label, kind="binary", classes=["other", finished.positive])
    prepared = []  # per fold: (training rows, test rows, features of every repertoire)
    for fold in finished.folds:
        train_rows, test_rows = finished.rows(fold)
        columns = select_columns(store, [ids[i] for i in train_rows], settings.spec, settings.max_features)
        prepared.append((train_rows, test_rows, kmer_features(store, ids, settings.spec, columns)))

    def pooled(y: np.ndarray, seed: int) -> float | None:
        truth, scores = [], []
        for train_rows, test_rows, features in prepared:
            if len(set(y[train_rows])) < 2 or len(set(y[test_rows])) < 2:
                return None
            fit = fit_kmer(features[train_rows], y[train_rows], target, settings, seed)
            truth.append(y[test_rows])
            scores.append(fit.outputs(features[test_rows][:, fit.feature_ids])[:, 0])
        return roc_auc(np.concatenate(truth).astype(bool), np.concatenate(scores))

    y = finished.outcomes()
    observed = pooled(y, run_seed)
    if observed is None:
        raise ValueError(f"{store.path}: a fold's training or test repertoires hold one class of {finished.label!r} "
                         "only")
    spread = [observed if seed == run_seed else pooled(y, seed) for seed in range(seeds)]
    donors = sorted(set(subjects[s] for s in ids))
    donor_label = {subjects[s]: y[i] for i, s in enumerate(ids)}
    rng = np.random.default_rng(run_seed)
    null: list[float] = []
    for _ in range(100 * permutations):  # folds this small that most draws fail would never finish
        if len(null) == permutations:
            break
        shuffled = dict(zip(donors, rng.permutation([donor_label[d] for d in donors])))
        auc = pooled(np.array([shuffled[subjects[s]] for s in ids]), run_seed)
        if auc is not None:
            null.append(auc)
    if len(null) < permutations:
        raise ValueError(f"only {len(null)} of {100 * permutations} permutations kept both classes in every fold; "
                         "the folds are too small for a permutation null")
    p = (1 + sum(a >= observed for a in null)) / (1 + len(null)) if null else float("nan")
    return {"observed": observed, "seeds": spread, "null": null, "p": p}


def check_kmer(out: Path, seeds: int, permutations: int) -> str:
    """kmer-check on a finished `run` folder: writes OUT/kmer_check.tsv, returns a summary line."""
    import numpy as np
    import polars as pl

    logging.getLogger("repclass.baselines").setLevel(logging.WARNING)  # 6 lines per fit otherwise
    finished = finished_run(out)
    run_seed = finished.seed
    result = kmer_check(finished, seeds, permutations)
    rows = ([("observed", run_seed, result["observed"])] + [("seed", i, a) for i, a in enumerate(result["seeds"])]
            + [("permutation", i, a) for i, a in enumerate(result["null"])])
    partial = out / "kmer_check.tsv.partial"
    pl.DataFrame(rows, schema=["kind", "index", "pooled_roc_auc"], orient="row").write_csv(partial, separator="\t")
    partial.replace(out / "kmer_check.tsv")
    spread = np.array(result["seeds"])
    line = (f"k-mer pooled ROC AUC {result['observed']:.3f} (run seed {run_seed}); over inner-CV seeds "
            f"0-{seeds - 1}: mean {spread.mean():.3f}, sd {spread.std(ddof=1) if seeds > 1 else 0:.3f}, "
            f"range {spread.min():.2f}-{spread.max():.2f}")
    if result["null"]:
        null = np.array(result["null"])
        line += (f"; permutation null ({len(null)}): mean {null.mean():.3f}, 95th percentile "
                 f"{np.quantile(null, 0.95):.3f}, p = {result['p']:.3f}")
    return line


# ---- pooled-probe -----------------------------------------------------------------------------------
def pooled_probe(finished: FinishedRun, n_kernels: int, init_seed: int) -> float:
    """Does DeepRC's representation carry the label at all, before any training?

    Every sequence goes through a randomly initialised DeepRC embedding (`n_kernels` convolution
    kernels, torch seed `init_seed`), each repertoire becomes the plain mean of its embeddings (the
    flat attention of an untrained model, without the top-k reduction), and per fold an L2 logistic
    regression on the standardised means (penalty by 3-fold inner cross-validation on the training
    repertoires) scores the test repertoires. Returns the pooled out-of-fold ROC AUC: the best a
    linear read-out of these features can do, with none of DeepRC's optimisation in the way.
    """
    import numpy as np
    import torch

    from repclass.config import ModelConfig
    from repclass.model.data import encode_table
    from repclass.metrics import roc_auc
    from repclass.model.deeprc import DeepRC

    torch.manual_seed(init_seed)
    model = DeepRC(ModelConfig(n_kernels=n_kernels)).eval()
    store = finished.store
    with torch.no_grad():
        means = np.stack([model.embed(torch.from_numpy(r.codes.astype(np.int64)),
                                      torch.from_numpy(r.lengths.astype(np.int64))).mean(0).numpy()
                          for r in (encode_table(store.read(s, ["junction_aa"])) for s in store.sample_ids)])
    y = finished.outcomes()

    truth, scores = [], []
    for fold in finished.folds:
        train, test = finished.rows(fold)
        truth.append(y[test])
        scores.append(_l2_logistic(means[train], y[train], init_seed)(means[test]))
    return roc_auc(np.concatenate(truth).astype(bool), np.concatenate(scores))


#: The L2 penalties (sklearn's C) the inner cross-validation of `_l2_logistic` chooses from: 10^-3 .. 10^2.
L2_STRENGTHS = tuple(10.0 ** (k / 2) for k in range(-6, 5))


def _l2_logistic(x_train, y_train, seed: int):
    """An L2 logistic regression on standardised features, its penalty chosen by 3-fold inner
    cross-validation (log loss) on the training rows; returns a scorer of new rows (decision values)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    def fit(x: np.ndarray, y: np.ndarray, strength: float) -> LogisticRegression:
        return LogisticRegression(C=strength, max_iter=5000).fit(x, y)

    scaler = StandardScaler().fit(x_train)
    x = scaler.transform(x_train)
    inner = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    strengths = np.array(L2_STRENGTHS)
    losses = []
    for strength in strengths:
        loss = 0.0
        for fit_rows, held in inner.split(x, y_train):
            p = np.clip(fit(x[fit_rows], y_train[fit_rows], strength).predict_proba(x[held])[:, 1], 1e-6, 1 - 1e-6)
            loss -= float(np.sum(y_train[held] * np.log(p) + (1 - y_train[held]) * np.log(1 - p)))
        losses.append(loss)
    model = fit(x, y_train, float(strengths[int(np.argmin(losses))]))
    return lambda rows: model.decision_function(scaler.transform(rows))


# ---- stats-check ------------------------------------------------------------------------------------
#: Per repertoire, from its clone counts: log number of clonotypes, Shannon entropy of the clone
#: sizes (nats), clonality (1 - entropy / log richness) and log share of the largest clone.
STATISTICS = ("log_richness", "entropy", "clonality", "log_top_clone")


def repertoire_statistics(store) -> "np.ndarray":
    """(repertoires, 4) array of STATISTICS in store order."""
    import numpy as np

    rows = []
    for sample in store.sample_ids:
        counts = store.read(sample, ["duplicate_count"])["duplicate_count"].to_numpy().astype(np.float64)
        share = counts / counts.sum()
        entropy = float(-(share * np.log(share)).sum())
        richness = len(counts)
        clonality = 1.0 - entropy / np.log(richness) if richness > 1 else 1.0
        rows.append([np.log(richness), entropy, clonality, np.log(share.max())])
    return np.array(rows)


def stats_check(out: Path) -> str:
    """The repertoire-statistics check on a finished `run` folder's folds.

    Per fold, an L2 logistic regression on the four STATISTICS (standardised; penalty by inner
    cross-validation), fit on the fold's training repertoires as the baselines are, scores every
    repertoire; the scores go to fold_k/stats/predictions.tsv, so that `summarise` reports them
    beside the methods (pooled and per fold, with intervals). Returns the summary lines: each
    statistic's own pooled ROC AUC over all repertoires (no training; above 0.5 when larger
    values go with the positive class) and the check's per-fold and pooled AUCs."""
    import numpy as np
    import polars as pl

    from repclass.metrics import roc_auc, roc_auc_interval

    finished = finished_run(out)
    features = repertoire_statistics(finished.store)
    y = finished.outcomes()
    ids = finished.store.sample_ids
    labels = finished.store.labels(finished.label)
    lines = [f"{name}: ROC AUC {roc_auc(y.astype(bool), features[:, i]):.3f} on all {len(y)} repertoires (no training)"
             for i, name in enumerate(STATISTICS)]
    truth, scores, per_fold = [], [], []
    for k, fold in enumerate(finished.folds, start=1):
        train, test = finished.rows(fold)
        scorer = _l2_logistic(features[train], y[train], finished.seed)
        fold_scores = scorer(features)
        truth.append(y[test])
        scores.append(fold_scores[test])
        per_fold.append(roc_auc(y[test].astype(bool), fold_scores[test]))
        target = out / f"fold_{k}" / "stats"
        target.mkdir(parents=True, exist_ok=True)
        probability = 1.0 / (1.0 + np.exp(-fold_scores))
        pl.DataFrame({"sample_id": ids, "split": [fold[s] for s in ids],
                      f"{finished.label}:p({finished.positive})": probability,
                      f"{finished.label}:label": [labels[s] for s in ids]}).write_csv(
            target / "predictions.tsv", separator="\t")
    auc, low, high = roc_auc_interval(np.concatenate(truth).astype(bool), np.concatenate(scores))
    lines.append(f"statistics regression: per fold {' '.join(f'{a:.2f}' for a in per_fold)}; pooled {auc:.3f} "
                 f"[{low:.3f}, {high:.3f}]")
    return "\n".join(lines)


def probe(out: Path, kernels: list[int], init_seeds: int) -> str:
    """pooled-probe on a finished `run` folder: one line per kernel count, AUC per init seed."""
    finished = finished_run(out)
    lines = []
    for n_kernels in kernels:
        aucs = [pooled_probe(finished, n_kernels, seed) for seed in range(init_seeds)]
        lines.append(f"{n_kernels} kernels: pooled ROC AUC per init seed {' '.join(f'{a:.3f}' for a in aucs)} "
                     f"(mean {sum(aucs) / len(aucs):.3f})")
    return "\n".join(lines)


def _settings(parser: argparse.ArgumentParser, items: list[str]) -> tuple[dict, dict]:
    """`--set FIELD=VALUE` items as (TrainConfig, ModelConfig) keyword arguments; a bad one is a
    usage error."""
    from dataclasses import fields

    from repclass.config import ModelConfig, TrainConfig

    train_fields = {field.name for field in fields(TrainConfig)}
    model_fields = {field.name for field in fields(ModelConfig)} - {"n_outputs"}  # n_outputs: from the label
    train_settings, model_settings = {}, {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in train_fields | model_fields:
            parser.error(f"--set {item}: {name!r} is not a TrainConfig or ModelConfig setting")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--set {item}: the value must be JSON (a number, true/false, or a quoted string)")
        (train_settings if name in train_fields else model_settings)[name] = parsed
    return train_settings, model_settings


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download and convert the cohorts")
    fetch_parser.add_argument("--out", type=Path, required=True)
    fetch_parser.add_argument("--from-git", action="append", default=[], metavar="COHORT=CLONE",
                              help="read a cohort's files from a local clone of its repository")
    fetch_parser.add_argument("--cohort", action="append", choices=sorted(COHORTS), default=None)
    run_parser = commands.add_parser("run", help="ingest, subject-grouped folds, DeepRC and baselines")
    run_parser.add_argument("--cohort", choices=sorted(COHORTS), required=True)
    run_parser.add_argument("--data", type=Path, required=True, help="the --out folder of fetch")
    run_parser.add_argument("--out", type=Path, required=True)
    run_parser.add_argument("--folds", type=int, default=5)
    run_parser.add_argument("--seed", type=int, default=0)
    run_parser.add_argument("--updates", type=int, default=2000)
    run_parser.add_argument("--device", default="auto")
    run_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                            help="a TrainConfig or ModelConfig setting for DeepRC, VALUE in JSON, e.g. the paper's "
                                 "start: --set init_kmers=0 --set init_attention=0, or --set n_kernels=256 "
                                 "(repeatable)")
    run_parser.add_argument("--implant", type=float, default=None, metavar="RATE",
                            help="implant a known signal into the cohort's own repertoires (three gapped and "
                                 "substituted random motifs at RATE in half of them, broken copies in the rest) "
                                 "and predict it instead of the cohort's label")
    run_parser.add_argument("--method", dest="methods", action="append", choices=RUN_METHODS, default=None,
                            help="train only these methods (repeatable; default all three); a later run with the "
                                 "same --out and --seed adds the others to the finished folds, e.g. the baselines "
                                 "first on a large cohort, DeepRC after")
    summary_parser = commands.add_parser("summarise", help="summary.tsv of a finished run")
    summary_parser.add_argument("out", type=Path)
    check_parser = commands.add_parser("kmer-check", help="the k-mer baseline's spread over inner-CV seeds and "
                                                          "its permutation null, on a finished run's folds")
    check_parser.add_argument("out", type=Path)
    check_parser.add_argument("--seeds", type=int, default=10)
    check_parser.add_argument("--permutations", type=int, default=100)
    probe_parser = commands.add_parser("pooled-probe", help="pooled out-of-fold AUC of a linear read-out of an "
                                                            "untrained DeepRC's mean embedding, on a run's folds")
    probe_parser.add_argument("out", type=Path)
    probe_parser.add_argument("--kernels", type=int, nargs="+", default=[32, 256])
    probe_parser.add_argument("--init-seeds", type=int, default=3)
    stats_parser = commands.add_parser("stats-check", help="an L2 regression on richness, entropy, clonality and "
                                                           "top clone share, on a run's folds (then `summarise`)")
    stats_parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        overrides, model_overrides = _settings(parser, args.overrides)
        if args.implant is not None and not 0 < args.implant <= 1:
            parser.error(f"run: --implant must be a share of the sequences, above 0 and at most 1, got {args.implant}")
    if args.command == "kmer-check" and (args.seeds < 1 or args.permutations < 0):
        parser.error("kmer-check: --seeds must be at least 1 and --permutations at least 0")
    if args.command == "pooled-probe" and (args.init_seeds < 1 or min(args.kernels) < 1):
        parser.error("pooled-probe: --kernels and --init-seeds must be at least 1")
    if args.command == "fetch":
        clones = dict(item.split("=", 1) for item in args.from_git)
        fetch(args.out, {k: Path(v) for k, v in clones.items()}, args.cohort or
              [c for c in sorted(COHORTS) if c not in GENEPLUS or c in clones])
    elif args.command == "run":
        run(args.cohort, args.data, args.out, args.folds, args.seed, args.updates, args.device, overrides,
            model_overrides, args.implant, args.methods)
    elif args.command == "stats-check":
        try:
            print(stats_check(args.out))
        except ValueError as exc:
            parser.exit(1, f"{args.command}: {exc}\n")
        summarise(args.out)
    elif args.command in ("kmer-check", "pooled-probe"):
        try:
            print(check_kmer(args.out, args.seeds, args.permutations) if args.command == "kmer-check"
                  else probe(args.out, args.kernels, args.init_seeds))
        except ValueError as exc:
            parser.exit(1, f"{args.command}: {exc}\n")
    else:
        summarise(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
