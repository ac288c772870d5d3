"""repclass.simulation.run: cohorts with implanted motifs, the vectorised OLGA sampler, `repclass simulate`."""
from __future__ import annotations

import collections
import dataclasses
import gc
import gzip
import hashlib
import importlib.util
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from repclass.io.airr import REQUIRED_FIELDS
from repclass.cli import main
from repclass.errors import OutputExistsError, UsageError
from repclass.simulation.run import (AIRR_COLUMNS, IMPLANTED_COLUMNS, SimulationConfig, simulate_cohort,
                                     simulate_repertoires)
from repclass.simulation import implant, vdj
from repclass.io.store import Store

# OLGA (in the test extra) provides the background models; the option and implant tests run without it.
needs_olga = pytest.mark.skipif(importlib.util.find_spec("olga") is None, reason="needs olga (pip install olga)")

SMALL = dict(n_repertoires=6, min_sequences=800, max_sequences=1200, seed=7)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_repertoire(folder: Path, sample_id: str) -> pl.DataFrame:
    return pl.read_csv(folder / "repertoires" / f"{sample_id}.tsv.gz", separator="\t", quote_char=None)


def check_airr_columns(columns: list[str]) -> None:
    """A simulated repertoire file: every field AIRR requires, in its order, then the known ones."""
    assert columns[:len(REQUIRED_FIELDS)] == list(REQUIRED_FIELDS)
    assert set(AIRR_COLUMNS) | {"repertoire_id"} == set(columns) - set(REQUIRED_FIELDS) | set(AIRR_COLUMNS)


def read_tsv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t", quote_char=None, schema_overrides={"status": pl.String})


def ingested(out: Path, store: Path) -> Store:
    """`repclass ingest` of a simulated cohort's folder; the store it wrote."""
    result = run("ingest", out / "samples.tsv", out / "repertoires", "--out", store, "--threads", 1)
    assert result.exit_code == 0, result.output
    return Store.open(store)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, SimulationConfig]:
    """Two motifs (one with a wildcard), exact implants, noise implants in negatives."""
    config = SimulationConfig(**SMALL, witness_rate=0.02, motifs=("SFEN", "G.WL"), noise_rate=0.01)
    out = tmp_path_factory.mktemp("sim") / "cohort"
    simulate_cohort(out, config)
    return out, config


# ----------------------------------------------------------------------------------------------
# the cohort holds what was asked for
# ----------------------------------------------------------------------------------------------
@needs_olga
def test_files_and_columns(cohort):
    out, config = cohort
    samples = read_tsv(out / "samples.tsv")
    assert samples.columns[:2] == ["sample_id", "status"]
    assert samples.height == config.n_repertoires
    assert samples["status"].value_counts().sort("status").rows() == [("+", 3), ("-", 3)]
    assert read_tsv(out / "implanted.tsv").columns == list(IMPLANTED_COLUMNS)
    for sample_id in samples["sample_id"]:
        table = read_repertoire(out, sample_id)
        check_airr_columns(table.columns)
        assert set(table["repertoire_id"]) == {sample_id}
        assert config.min_sequences <= table.height <= config.max_sequences
        assert table["junction_aa"].is_unique().all()          # one clonotype per junction
        assert table["junction_aa"].str.contains("^C[A-Z]+[FW]$").all()
        assert table["duplicate_count"].min() >= 1 and table["duplicate_count"].max() <= config.max_count
        assert set(table["locus"]) == {"TRB"} and set(table["productive"]) == {"T"}


@needs_olga
def test_witnesses_match_the_request(cohort):
    out, config = cohort
    samples = read_tsv(out / "samples.tsv")
    implanted = read_tsv(out / "implanted.tsv")
    pattern = re.compile("^(?:SFEN|G.WL)$")
    for row in samples.iter_rows(named=True):
        rows = implanted.filter(pl.col("sample_id") == row["sample_id"])
        table = read_repertoire(out, row["sample_id"])
        junction_of = dict(zip(table["sequence_id"], table["junction_aa"]))
        if row["status"] == "+":
            expected = max(1, round(config.witness_rate * row["simulated_sequences"]))
            assert rows.height == row["witnesses"] == expected
            assert row["witness_rate"] == pytest.approx(expected / table.height, abs=1e-8)
            assert not rows["noise"].any()
            assert set(rows["motif"]) <= {"SFEN", "G.WL"}
        else:
            assert row["witnesses"] == 0
            assert rows.height == row["noise_implants"] == max(1, round(config.noise_rate * table.height))
            assert rows["noise"].all()
        for r in rows.iter_rows(named=True):
            start, text = r["motif_start"], r["implanted_text"]
            assert junction_of[r["sequence_id"]] == r["junction_aa"]            # the file holds the implant
            assert r["junction_aa"][start:start + len(text)] == text
            assert implant.FLANK <= start <= len(r["junction_aa"]) - implant.FLANK - len(text)
            assert len(r["junction_aa"]) == len(r["original_junction_aa"])
            # exact motifs (no gaps or substitutions asked): a witness is the motif, a noise
            # implant never is, nor does a negative's implanted junction hold one anywhere
            assert bool(pattern.match(text)) is not r["noise"]
            if r["noise"]:
                assert not re.search("SFEN|G.WL", r["junction_aa"])


@needs_olga
def test_both_motifs_are_used(cohort):
    out, _ = cohort
    implanted = read_tsv(out / "implanted.tsv").filter(~pl.col("noise"))
    counts = collections.Counter(implanted["motif"])
    assert set(counts) == {"SFEN", "G.WL"} and min(counts.values()) > 0.25 * implanted.height


@needs_olga
def test_repertoire_files_are_valid_airr_rearrangements(extras, tmp_path):
    """What the README and `simulate --help` call AIRR passes the AIRR Community's validator,
    non-productive rows included, and reads back as the same rearrangements."""
    airr = pytest.importorskip("airr", reason="the airr package is a test dependency: pip install -e '.[test]'")
    out, _ = extras
    for path in sorted((out / "repertoires").glob("*.tsv.gz"))[:2]:
        plain = tmp_path / path.name.removesuffix(".gz")
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        assert airr.validate_rearrangement(str(plain)), path
        with open(plain) as handle:
            records = list(airr.io.RearrangementReader(handle, validate=True))
        table = read_repertoire(out, path.name.split(".")[0])
        assert [r["junction_aa"] for r in records] == table["junction_aa"].to_list()
        assert [r["productive"] for r in records] == (table["productive"] == "T").to_list()
        assert {r["repertoire_id"] for r in records} == {path.name.split(".")[0]}
        assert all(isinstance(r["duplicate_count"], int) for r in records)


@needs_olga
def test_output_ingests_cleanly(cohort, tmp_path):
    out, _ = cohort
    store = ingested(out, tmp_path / "x.store")
    samples = store.samples
    assert (samples["rows_kept"] == samples["rows_read"]).all()
    assert (samples["n_sequences"] == samples["simulated_sequences"].cast(pl.Int64)).all()
    assert store.labels("status") == dict(zip(samples["sample_id"], samples["status"]))


# ----------------------------------------------------------------------------------------------
# implants: wildcards, substitutions, gaps, broken copies
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("motif, substitution, gap, check", [
    ("SFEN", 0.0, 0.0, lambda t: t == "SFEN"),
    ("G.WL", 0.0, 0.0, lambda t: re.fullmatch("G[A-Z]WL", t)),
    ("SFEN", 1.0, 0.0, lambda t: len(t) == 4 and all(a != b for a, b in zip(t, "SFEN"))),
    ("G.WL", 1.0, 0.0, lambda t: t[0] != "G" and t[2] != "W" and t[3] != "L"),
    ("SFEN", 0.0, 1.0, lambda t: t in ("SEN", "SFN")),
    ("SF", 0.0, 1.0, lambda t: t == "SF"),                      # too short for an interior gap
])
def test_witness_text(motif, substitution, gap, check):
    rng = np.random.default_rng(0)
    texts = [implant.witness_text(rng, motif, substitution, gap) for _ in range(200)]
    assert all(check(t) for t in texts), texts[:10]


def test_gap_and_substitution_rates():
    rng = np.random.default_rng(1)
    texts = [implant.witness_text(rng, "SFENGW", 0.2, 0.5) for _ in range(4000)]
    gapped = np.mean([len(t) == 5 for t in texts])
    changed = np.mean([a != b for t in texts if len(t) == 6 for a, b in zip(t, "SFENGW")])
    assert gapped == pytest.approx(0.5, abs=0.03)
    assert changed == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize("motif, gap", [("SFEN", 0.0), ("SFEN", 0.5), ("AAAA", 0.0), ("G.WL", 0.5)])
def test_noise_text_never_matches(motif, gap):
    rng = np.random.default_rng(2)
    forbidden = implant.gapped_variants((motif,)) if gap else (motif,)
    matcher = re.compile(implant.motif_pattern(forbidden))
    texts = [implant.noise_text(rng, motif, matcher, 0.0, gap) for _ in range(300)]
    assert not any(matcher.search(t) for t in texts)
    if motif == "SFEN" and not gap:
        assert all(sorted(t) == sorted("SFEN") for t in texts)   # the same residues, shuffled


@needs_olga
def test_gapped_and_substituted_cohort_negatives_hold_no_motif(tmp_path):
    config = SimulationConfig(**SMALL, witness_rate=0.02, motifs=("SFEN",), gap_probability=0.5,
                              substitution_probability=0.1, noise_rate=0.02, purge_background=True)
    cohort = simulate_repertoires(config)
    witnesses = cohort.implanted.filter(~pl.col("noise"))
    assert set(witnesses["implanted_text"].str.len_chars()) == {3, 4}
    forbidden = re.compile(implant.motif_pattern(implant.gapped_variants(("SFEN",))))
    for row, table in zip(cohort.samples.iter_rows(named=True), cohort.repertoires):
        if row["status"] == "-":
            assert not table["junction_aa"].str.contains("SFEN").any()
            noise = cohort.implanted.filter(pl.col("sample_id") == row["sample_id"])
            assert noise.height > 0 and not any(forbidden.search(t) for t in noise["implanted_text"])


# ----------------------------------------------------------------------------------------------
# purge, backgrounds, determinism
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("purge", [True, False])
@needs_olga
def test_purge_background(purge):
    # GG is common in TRB junctions: without purging, the background holds it
    config = SimulationConfig(**SMALL, witness_rate=0.01, motifs=("GG",), purge_background=purge)
    cohort = simulate_repertoires(config)
    in_background = 0
    for sample_id, table in zip(cohort.samples["sample_id"], cohort.repertoires):
        implanted = set(cohort.implanted.filter(pl.col("sample_id") == sample_id)["sequence_id"])
        background = table.filter(~pl.col("sequence_id").is_in(list(implanted)))
        in_background += int(background["junction_aa"].str.contains("GG").sum())
    assert (in_background == 0) is purge


@needs_olga
def test_same_seed_same_bytes_whatever_the_threads(tmp_path):
    config = SimulationConfig(**SMALL, motifs=("S.EN",), random_motifs=2, gap_probability=0.3, noise_rate=0.01)
    simulate_cohort(tmp_path / "a", config, threads=1)
    simulate_cohort(tmp_path / "b", config, threads=2)

    def digests(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert len(digests(tmp_path / "a")) == config.n_repertoires + 3
    with gzip.open(tmp_path / "a" / "repertoires" / "sample_01.tsv.gz") as handle:
        check_airr_columns(handle.readline().decode().rstrip("\n").split("\t"))
    other = SimulationConfig(**{**SMALL, "seed": 8}, motifs=("S.EN",))
    simulate_cohort(tmp_path / "c", other)
    assert digests(tmp_path / "c")["samples.tsv"] != digests(tmp_path / "a")["samples.tsv"]


@needs_olga
def test_backgrounds_do_not_depend_on_the_implants():
    """Same seed, another witness rate: the same background sequences (paired comparisons)."""
    low = simulate_repertoires(SimulationConfig(**SMALL, witness_rate=0.001))
    high = simulate_repertoires(SimulationConfig(**SMALL, witness_rate=0.05, noise_rate=0.01))
    for a, b in zip(low.repertoires, high.repertoires):
        assert a.height == b.height
        assert (a["junction_aa"] == b["junction_aa"]).mean() > 0.9
        assert a["v_call"].equals(b["v_call"]) and a["duplicate_count"].equals(b["duplicate_count"])


# ----------------------------------------------------------------------------------------------
# extras: non-productive rows and covariates
# ----------------------------------------------------------------------------------------------
EXTRAS = dict(nonproductive_rate=0.03, covariates=True)


@pytest.fixture(scope="module")
def extras(tmp_path_factory) -> tuple[Path, SimulationConfig]:
    config = SimulationConfig(**SMALL, witness_rate=0.02, noise_rate=0.01, **EXTRAS)
    out = tmp_path_factory.mktemp("extras") / "cohort"
    simulate_cohort(out, config, threads=1)
    return out, config


@needs_olga
def test_nonproductive_rows_are_those_asked_for(extras):
    out, config = extras
    samples = read_tsv(out / "samples.tsv")
    assert samples.columns == ["sample_id", "status", "age", "hla_group", "simulated_sequences",
                               "nonproductive_rows", "witnesses", "witness_rate", "noise_implants"]
    implanted = read_tsv(out / "implanted.tsv")
    for row in samples.iter_rows(named=True):
        table = read_repertoire(out, row["sample_id"])
        check_airr_columns(table.columns)
        productive = table.filter(pl.col("productive") == "T")
        broken = table.filter(pl.col("productive") == "F")
        assert productive.height == row["simulated_sequences"]
        assert broken.height == row["nonproductive_rows"] == round(config.nonproductive_rate * productive.height)
        assert productive["junction_aa"].str.contains("^C[A-Z]+[FW]$").all()
        assert broken["junction_aa"].str.contains(r"[*_]").all()
        assert 0 < broken["junction_aa"].str.contains("_", literal=True).sum() < broken.height  # both kinds
        assert broken["v_call"].str.starts_with("TRBV").all() and set(broken["locus"]) == {"TRB"}
        assert broken["duplicate_count"].min() >= 1 and broken["duplicate_count"].max() <= config.max_count
        assert table["sequence_id"].to_list() == [f"{row['sample_id']}_{i:05d}" for i in range(1, table.height + 1)]
        rows_broken = table.with_row_index().filter(pl.col("productive") == "F")["index"]
        assert rows_broken.min() < productive.height          # spread among the productive rows
        rows = implanted.filter(pl.col("sample_id") == row["sample_id"])
        joined = rows.join(table, on="sequence_id", how="left")
        assert (joined["junction_aa_right"] == joined["junction_aa"]).all()        # the file holds the implant
        assert set(joined["productive"]) <= {"T"}


@needs_olga
def test_nonproductive_rows_are_dropped_by_ingest(extras, tmp_path):
    out, _ = extras
    store = ingested(out, tmp_path / "x.store")
    samples = store.samples.sort("sample_id")
    sheet = read_tsv(out / "samples.tsv").sort("sample_id")
    assert (samples["n_sequences"] == sheet["simulated_sequences"]).all()
    assert (samples["dropped_non_productive"] == sheet["nonproductive_rows"]).all()
    assert (samples["rows_read"] - samples["rows_kept"] == sheet["nonproductive_rows"]).all()
    assert store.labels("hla_group") == dict(zip(sheet["sample_id"], sheet["hla_group"]))


@needs_olga
def test_covariates_are_random_labels_in_range():
    config = SimulationConfig(n_repertoires=300, min_sequences=20, max_sequences=20, witness_rate=0.0,
                              covariates=True, seed=5)
    samples = simulate_repertoires(config, threads=1).samples
    assert samples["age"].dtype == pl.Int64 and samples["age"].is_between(18, 90).all()
    assert samples["age"].mean() == pytest.approx(45, abs=3) and samples["age"].std() == pytest.approx(15, abs=2)
    counts = samples["hla_group"].value_counts()
    assert set(counts["hla_group"]) == {"A", "B", "C"} and counts["count"].min() > 70
    assert abs(np.corrcoef(samples["age"], samples["status"] == "+")[0, 1]) < 0.2  # unrelated to the status


@needs_olga
def test_extras_same_seed_same_bytes(extras, tmp_path):
    out, config = extras
    simulate_cohort(tmp_path / "again", config, threads=2)
    for path in sorted(out.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "again" / path.relative_to(out)).read_bytes(), path


@needs_olga
def test_extras_change_nothing_else(extras, tmp_path):
    """The extras draw from streams of their own: the rest of the cohort is the one without them."""
    out, config = extras
    plain = tmp_path / "plain"
    simulate_cohort(plain, dataclasses.replace(config, nonproductive_rate=0.0, covariates=False), threads=1)
    samples, plain_samples = read_tsv(out / "samples.tsv"), read_tsv(plain / "samples.tsv")
    assert samples.select(plain_samples.columns).equals(plain_samples)
    assert read_tsv(out / "implanted.tsv").drop("sequence_id").equals(
        read_tsv(plain / "implanted.tsv").drop("sequence_id"))
    for sample_id in samples["sample_id"]:
        productive = read_repertoire(out, sample_id).filter(pl.col("productive") == "T")
        assert productive.drop("sequence_id").equals(read_repertoire(plain, sample_id).drop("sequence_id"))


@needs_olga
def test_outputs_without_extras_are_those_of_earlier_versions(tmp_path):
    """With the extras off, the files hold what they held before the extras existed: this digest, of
    samples.tsv, implanted.tsv and the uncompressed repertoires, was taken from that version (numpy
    2.4.6, polars 2.1.0; other versions of those may draw or write otherwise). The repertoires are
    AIRR files with every required field since; the digest reads the columns they had then."""
    config = SimulationConfig(**SMALL, motifs=("S.EN",), random_motifs=2, gap_probability=0.3, noise_rate=0.01)
    simulate_cohort(tmp_path / "a", config, threads=1)
    digest = hashlib.sha256()
    for path in [tmp_path / "a" / "samples.tsv", tmp_path / "a" / "implanted.tsv",
                 *sorted((tmp_path / "a" / "repertoires").glob("*.tsv.gz"))]:
        if path.suffix != ".gz":
            digest.update(path.read_bytes())
            continue
        lines = [line.split("\t") for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
        keep = [lines[0].index(name) for name in AIRR_COLUMNS]
        digest.update("".join("\t".join(fields[i] for i in keep) + "\n" for fields in lines).encode())
    assert digest.hexdigest() == "5d730056cca7f10b6141de90847b9aea069609cfb0a04f001a5cf483c15524bd"


def test_nonproductive_junction():
    rng = np.random.default_rng(4)
    nt = "TGTGCCAGCAGTTTAGGGCAGGAGACCCAGTACTTC"        # CASSLGQETQYF
    assert vdj.translate(nt) == "CASSLGQETQYF"
    texts = [vdj.nonproductive_junction(nt, rng) for _ in range(400)]
    stops = [t for t in texts if "*" in t and "_" not in t]
    shifts = [t for t in texts if "_" in t]
    assert len(stops) + len(shifts) == 400 and len(stops) == pytest.approx(200, abs=40)
    for t in stops:   # one internal residue replaced by a stop
        assert len(t) == 12 and t[0] == "C" and t[-1] == "F" and t.count("*") == 1
        assert sum(a != b for a, b in zip(t, "CASSLGQETQYF")) == 1
    for t in shifts:  # V-frame head, J-frame tail: the tail ends as the junction does
        head, tail = t.split("_")
        assert "CASSLGQETQYF".startswith(head) and tail.endswith("F") and len(head) + len(tail) == 11


@pytest.mark.parametrize("model, locus, gene", [("human_IGH", "IGH", "IGHV"), ("mouse_TRB", "TRB", "TRBV")])
@needs_olga
def test_other_background_models(model, locus, gene):
    config = SimulationConfig(n_repertoires=2, min_sequences=300, max_sequences=300, background_model=model,
                              motifs=("SFEN",), seed=2)
    for table in simulate_repertoires(config).repertoires:
        assert set(table["locus"]) == {locus}
        assert table["v_call"].str.starts_with(gene).all()
        assert table["junction_aa"].str.contains("^C[A-Z]+[FW]$").all()


@needs_olga
def test_background_from_a_store(cohort, tmp_path):
    out, _ = cohort
    ingested(out, tmp_path / "s.store")
    pool = set(pl.concat([t for _, t in Store.open(tmp_path / "s.store").iter_tables(["junction_aa"])])
               ["junction_aa"])
    config = SimulationConfig(n_repertoires=3, min_sequences=500, max_sequences=500, motifs=("WWW",),
                              witness_rate=0.01, background_store=tmp_path / "s.store", seed=1)
    cohort2 = simulate_repertoires(config)
    implanted = set(cohort2.implanted["sequence_id"])
    for table in cohort2.repertoires:
        background = table.filter(~pl.col("sequence_id").is_in(list(implanted)))
        assert set(background["junction_aa"]) <= pool
        assert set(table["locus"]) == {"TRB"}
    too_many = SimulationConfig(n_repertoires=1, min_sequences=10**6, max_sequences=10**6,
                                background_store=tmp_path / "s.store")
    with pytest.raises(UsageError, match="fewer than"):
        simulate_repertoires(too_many)


def test_whole_repertoires_are_the_stores_own_with_implants(tiny_cohort, tmp_path):
    """--keep-repertoires: one repertoire per stored one, its ids, rows, genes and counts kept; only
    the implanted junctions change, and half the repertoires carry the witnesses."""
    store = Store.open(tiny_cohort[0])
    config = SimulationConfig(background_store=store.path, whole_repertoires=True, witness_rate=0.01,
                              motifs=("FWQE",), noise_rate=0.01, seed=3)
    simulated = simulate_repertoires(config, threads=1)
    assert simulated.samples["sample_id"].to_list() == store.sample_ids
    assert (simulated.samples["status"] == "+").sum() == len(store) // 2
    implanted = simulated.implanted
    for sample_id, table in zip(store.sample_ids, simulated.repertoires):
        original = store.read(sample_id)
        assert table.height == original.height
        assert table["v_call"].to_list() == original["v_call"].fill_null("").to_list()
        assert table["duplicate_count"].to_list() == original["duplicate_count"].fill_null(1).to_list()
        changed = table["junction_aa"] != original["junction_aa"]
        mine = implanted.filter(pl.col("sample_id") == sample_id)
        assert set(table.filter(changed)["sequence_id"]) == set(mine["sequence_id"])
        assert mine.height == max(1, round(0.01 * table.height))
        assert mine["noise"].all() != (simulated.samples.filter(pl.col("sample_id") == sample_id)["status"][0] == "+")
    # same seed, same cohort; a cohort written to files ingests with the store's ids
    assert simulate_repertoires(config, threads=2).implanted.equals(implanted)
    result = run("simulate", "--out", tmp_path / "sim", "--background", store.path, "--keep-repertoires",
                 "--witness-rate", 0.01, "--motif", "FWQE", "--noise-rate", 0.01, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert f"{len(store)} repertoires ({len(store) // 2} positive)" in result.output
    assert read_tsv(tmp_path / "sim" / "implanted.tsv").equals(implanted)
    assert ingested(tmp_path / "sim", tmp_path / "sim.store").sample_ids == store.sample_ids


def test_whole_repertoires_refuse_a_sample_id_that_cannot_name_a_file(tmp_path):
    from repclass import ingest

    pl.DataFrame({"junction_aa": ["CASSLGQGAYEQYF", "CASSPDRGNTEAFF"], "v_call": ["TRBV1"] * 2,
                  "j_call": ["TRBJ1-1"] * 2}).write_csv(tmp_path / "r.tsv", separator="\t")
    pl.DataFrame({"sample_id": ["donor/1"], "file": [str(tmp_path / "r.tsv")]}).write_csv(
        tmp_path / "sheet.tsv", separator="\t")
    store = ingest(tmp_path / "sheet.tsv", tmp_path / "odd.store")
    config = SimulationConfig(background_store=store.path, whole_repertoires=True, witness_rate=0.5, motifs=("WW",))
    with pytest.raises(UsageError, match="sample id 'donor/1' cannot name a repertoire file"):
        simulate_cohort(tmp_path / "sim", config)
    assert not (tmp_path / "sim").exists()
    assert simulate_repertoires(config).samples["sample_id"].to_list() == ["donor/1"]  # in memory: no file


def test_whole_repertoires_purge_the_motifs_own_occurrences(tiny_cohort):
    store = Store.open(tiny_cohort[0])
    config = SimulationConfig(background_store=store.path, whole_repertoires=True, witness_rate=0.01,
                              motifs=("GG",), purge_background=True, seed=1)
    simulated = simulate_repertoires(config, threads=1)
    for sample_id, table in zip(store.sample_ids, simulated.repertoires):
        background = table.filter(~pl.col("sequence_id").is_in(simulated.implanted["sequence_id"].implode()))
        assert not background["junction_aa"].str.contains("GG").any()
        assert table.height == int((~store.read(sample_id)["junction_aa"].str.contains("GG")).sum())


@pytest.mark.parametrize("changes, fragment", [
    (dict(motifs=("C",), purge_background=True), "cannot be purged"),        # every junction starts with C
    (dict(motifs=("A",), noise_rate=0.5), "noise implants fit"),              # nearly every junction has an A
    (dict(motifs=("SFENSFENSFENSFENSFENSFEN",)), "motif implants fit"),       # longer than any junction
])
@needs_olga
def test_impossible_requests_fail_with_a_message(changes, fragment):
    with pytest.raises(UsageError, match=fragment):
        simulate_repertoires(SimulationConfig(**{**SMALL, "n_repertoires": 2, **changes}))


def test_existing_output_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError):
        simulate_cohort(tmp_path / "out", SimulationConfig(**SMALL))


def test_missing_olga_names_the_install(monkeypatch):
    vdj.load_model.cache_clear()
    monkeypatch.setitem(sys.modules, "olga", None)
    with pytest.raises(UsageError, match="pip install olga"):
        vdj.load_model("human_TRB")
    vdj.load_model.cache_clear()


# ----------------------------------------------------------------------------------------------
# options and the command line
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, fragment", [
    (dict(witness_rate=1.5), "witness rate must be between 0 and 1"),
    (dict(noise_rate=-0.1), "noise rate"),
    (dict(motifs=("",)), "motif is empty"),
    (dict(motifs=("SFXN",)), "'X'"),
    (dict(motifs=("...",)), "only wildcards"),
    (dict(motifs=("SFEN", "sfen")), "repeated"),
    (dict(motifs=(), random_motifs=0), "no motif"),
    (dict(min_sequences=10, max_sequences=5), "min <= max"),
    (dict(n_positive=9), "number of positives"),
    (dict(background_model="human_TRA"), "unknown background model"),
    (dict(random_motifs=1, random_motif_length=(5, 3)), "random motifs"),
    (dict(nonproductive_rate=1.5), "nonproductive rate must be between 0 and 1"),
    (dict(nonproductive_rate=0.02, background_store="x.store"), "drop --nonproductive-rate or --background"),
    (dict(whole_repertoires=True), "needs a store to take them from (--background STORE)"),
])
def test_bad_config(changes, fragment):
    with pytest.raises(UsageError, match=re.escape(fragment)):
        SimulationConfig(**{**SMALL, **changes})


@pytest.mark.parametrize("args, fragment", [
    (["--witness-rate", "1.5"], "--witness-rate"),
    (["--motif", ""], "motif is empty"),
    (["--motif", "SF1N"], "'1'"),
    (["--sequences", "10-x"], "--sequences"),
    (["--positives", "200"], "--positives"),
    (["--nonproductive-rate", "-0.1"], "--nonproductive-rate"),
    (["--nonproductive-rate", "0.1", "--background", "x.store"], "--background"),
    (["--keep-repertoires"], "--background STORE"),
    (["--background", "x.store", "--keep-repertoires", "--repertoires", "10"], "--repertoires cannot be used"),
    (["--background", "x.store", "--keep-repertoires", "--sequences", "100"], "--sequences cannot be used"),
])
def test_cli_bad_options_exit_2_with_one_line(args, fragment, tmp_path):
    result = run("simulate", "--out", tmp_path / "x", *args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert not (tmp_path / "x").exists()


@needs_olga
def test_cli_end_to_end(tmp_path):
    result = run("simulate", "--out", tmp_path / "sim", "--repertoires", 4, "--sequences", "500-700",
                 "--witness-rate", 0.01, "--motif", "SFEN", "--random-motifs", 1, "--motif-length", "5",
                 "--noise-rate", 0.01, "--purge-background", "--nonproductive-rate", 0.02, "--covariates",
                 "--seed", 3, "--threads", 1)
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert "4 repertoires (2 positive)" in summary and "SFEN" in summary and "non-productive rows" in summary
    samples = read_tsv(tmp_path / "sim" / "samples.tsv")
    assert {"age", "hla_group", "nonproductive_rows"} <= set(samples.columns)
    motifs = read_tsv(tmp_path / "sim" / "implanted.tsv").filter(~pl.col("noise"))["motif"]
    assert set(motifs) <= {summary.split("motifs ")[1].split(", ")[0], summary.split(", ")[-1]}
    assert {len(m) for m in motifs} <= {4, 5}
    assert run("simulate", "--out", tmp_path / "sim").exit_code == 1          # exists; needs --force
    result = run("ingest", tmp_path / "sim" / "samples.tsv", tmp_path / "sim" / "repertoires",
                 "--out", tmp_path / "sim.store")
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------------------------
# the vectorised sampler against OLGA's own generator
# ----------------------------------------------------------------------------------------------
def test_alias_tables_draw_their_distributions():
    rng = np.random.default_rng(3)
    p = rng.random((3, 12)) ** 3
    p[1, 5:] = 0.0                                                   # zeros are never drawn
    table = vdj.Alias.of(p)
    rows = np.repeat(np.arange(3), 100_000)
    drawn = table.draw(rng.random(rows.size), rows)
    for r in range(3):
        frequency = np.bincount(drawn[rows == r], minlength=12) / 100_000
        assert np.abs(frequency - p[r] / p[r].sum()).max() < 0.006
    assert (drawn[rows == 1] < 5).all()


@needs_olga
def test_reversed_insertions_are_the_chain_read_backwards():
    model = vdj.load_model("human_TRB")
    lengths = np.array([0, 1, 5, 3, 7, 2])
    forward = vdj._insertions(np.random.default_rng(4), lengths, model.cum_first_dj, model.cum_next_dj)
    backward = vdj._insertions(np.random.default_rng(4), lengths, model.cum_first_dj, model.cum_next_dj,
                               reverse=True)
    for row, length in enumerate(lengths):
        assert backward[row, :length].tolist() == forward[row, :length][::-1].tolist()
        assert not forward[row, length:].any() and not backward[row, length:].any()


@needs_olga
def test_insertions_follow_the_markov_chain():
    model = vdj.load_model("human_TRB")
    chains = vdj._insertions(np.random.default_rng(5), np.full(4000, 40), model.cum_first_vd, model.cum_next_vd)
    first = np.bincount(chains[:, 0], minlength=4) / 4000
    assert np.abs(first - np.diff(model.cum_first_vd, prepend=0.0)).max() < 0.03
    pairs = np.zeros((4, 4))
    np.add.at(pairs, (chains[:, :-1].ravel(), chains[:, 1:].ravel()), 1)
    transition = pairs / pairs.sum(axis=1, keepdims=True)               # row: previous nucleotide
    assert np.abs(transition - np.diff(model.cum_next_vd, axis=1, prepend=0.0)).max() < 0.02


def _tvd(a, b) -> float:
    ca, cb = collections.Counter(a), collections.Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


@pytest.mark.parametrize("name, folder", [("human_TRB", "human_T_beta"), ("mouse_TRB", "mouse_T_beta"),
                                          ("human_IGH", "human_B_heavy")])
@needs_olga
def test_vectorised_sampler_matches_olga(name, folder):
    """Length, V, J and residue distributions of 4,000 junctions of each generator.

    Two samples of n = 4,000 from one distribution differ by a total variation distance (TVD) of
    about 0.5 * sum_i sqrt(4 p_i (1 - p_i) / (pi n)): ~0.03 for the ~15 lengths and ~0.05 for
    the ~50 V alleles in use (OLGA against itself, 10,000 vs 10,000: 0.03 and 0.036). The bounds
    are about twice that noise; a sampler that drew V without its deletion profile, forgot the
    frame or anchor checks, or read N2 the wrong way round would exceed the length or residue bound.
    """
    import os

    import olga
    import olga.load_model as olga_load
    import olga.sequence_generation as olga_generation

    n = 4000
    model = vdj.load_model(name)
    aa, lengths, v, j = vdj.sample_junctions(model, np.random.default_rng(11), n)
    ours = [bytes(row[:length]).decode() for row, length in zip(aa, lengths)]
    assert all(s[0] == "C" and s[-1] in "FW" and "*" not in s for s in ours)

    path = os.path.join(os.path.dirname(olga.__file__), "default_models", folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)   # OLGA leaves its model files open
        genomic = olga_load.GenomicDataVDJ()
        genomic.load_igor_genomic_data(*(os.path.join(path, f) for f in
                                         ("model_params.txt", "V_gene_CDR3_anchors.csv", "J_gene_CDR3_anchors.csv")))
        generative = olga_load.GenerativeModelVDJ()
        generative.load_and_process_igor_model(os.path.join(path, "model_marginals.txt"))
        gc.collect()
    generator = olga_generation.SequenceGenerationVDJ(generative, genomic)
    state = np.random.get_state()
    np.random.seed(5)
    theirs = []
    while len(theirs) < n:
        _nt, junction, v_index, j_index = generator.gen_rnd_prod_CDR3()
        if junction[-1] in "FW":   # OLGA also accepts a final V; repclass keeps C...F/W junctions
            theirs.append((junction, v_index, j_index))
    np.random.set_state(state)

    assert _tvd([len(s) for s in ours], [len(t[0]) for t in theirs]) < 0.06
    assert _tvd(v.tolist(), [t[1] for t in theirs]) < 0.1
    assert _tvd(j.tolist(), [t[2] for t in theirs]) < 0.06
    assert _tvd(list("".join(ours)), list("".join(t[0] for t in theirs))) < 0.02
    # residues away from the germline-dominated ends: N insertions and D
    middle = lambda s: s[4:-4]  # noqa: E731
    assert _tvd(list("".join(map(middle, ours))), list("".join(middle(t[0]) for t in theirs))) < 0.03
