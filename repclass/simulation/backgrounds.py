"""Where a simulated repertoire's sequences come from: drawn from an OLGA model, sampled from the
pooled junctions of a repclass store, or a store's repertoire kept whole (`make_background`)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from repclass.errors import UsageError
from repclass.simulation.config import SimulationConfig

if TYPE_CHECKING:
    import polars as pl

    from repclass.io.store import Store


class SampledBackground:
    """A background whose repertoires are drawn: a size, that many junctions, Zipf clone counts."""

    def draw(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        raise NotImplementedError

    def repertoire(self, sample_id: str, rng: np.random.Generator, config: SimulationConfig
                   ) -> tuple["pl.DataFrame", np.ndarray]:
        """(junction_aa, v_call, j_call) and the clone counts of one repertoire."""
        n = int(rng.integers(config.min_sequences, config.max_sequences + 1))
        table = self.draw(rng, n)
        return table, np.minimum(rng.zipf(config.zipf_a, size=n), config.max_count)


class OlgaBackground(SampledBackground):
    """Distinct productive junctions drawn from an OLGA model, with a motif filter."""

    def __init__(self, name: str, purge: re.Pattern[str] | None) -> None:
        from repclass.simulation.vdj import load_model

        self.model = load_model(name)
        self.locus = self.model.locus
        self.purge = purge
        self._v_names = np.array(self.model.v_names, dtype=object)
        self._j_names = np.array(self.model.j_names, dtype=object)

    def draw(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        import polars as pl

        from repclass.simulation.vdj import sample_junctions

        parts: list[pl.DataFrame] = []
        have = drawn = 0
        seen: pl.Series | None = None
        while have < n:
            if drawn > 20 * n + 10_000:
                # Only when nearly every junction holds a motif (e.g. a purged motif "C").
                raise UsageError(f"only {have} of {drawn} junctions drawn from {self.model.name} are distinct and "
                                 f"free of the motifs; a motif this common cannot be purged (drop "
                                 f"--purge-background or use a longer motif)")
            # A few percent more than needed covers duplicates and purged sequences.
            want = int((n - have) * 1.05) + 16
            drawn += want
            aa, _lengths, v, j = sample_junctions(self.model, rng, want)
            junctions = pl.Series("junction_aa", aa.view(f"S{aa.shape[1]}").ravel()).cast(pl.String)
            frame = pl.DataFrame({"junction_aa": junctions, "v_call": self._v_names[v].tolist(),
                                  "j_call": self._j_names[j].tolist()})
            frame = frame.filter(pl.col("junction_aa").is_first_distinct())
            if seen is not None:
                frame = frame.filter(~pl.col("junction_aa").is_in(seen.implode()))
            if self.purge is not None:
                frame = frame.filter(~pl.col("junction_aa").str.contains(self.purge.pattern))
            parts.append(frame)
            have += frame.height
            seen = pl.concat([p["junction_aa"] for p in parts])
        return pl.concat(parts).head(n)

    def draw_nonproductive(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        """n non-productive rows (junction_aa, v_call, j_call): junctions of at least 6 codons, broken."""
        import polars as pl

        from repclass.simulation.vdj import nonproductive_junction, sample_junctions

        texts, v_calls, j_calls = [], [], []
        while len(texts) < n:
            _, lengths, v, j, nt = sample_junctions(self.model, rng, n - len(texts) + 16, nucleotides=True)
            for i in np.flatnonzero(lengths >= 6)[:n - len(texts)]:  # room for an internal stop or frameshift
                texts.append(nonproductive_junction(nt[i, :3 * lengths[i]].tobytes().decode("ascii"), rng))
                v_calls.append(self._v_names[v[i]])
                j_calls.append(self._j_names[j[i]])
        return pl.DataFrame({"junction_aa": texts, "v_call": v_calls, "j_call": j_calls},
                            schema={"junction_aa": pl.String, "v_call": pl.String, "j_call": pl.String})


def junction_store(path: Path) -> "Store":
    from repclass.io.store import Store

    store = Store.open(path)
    if store.junction_convention != "junction":
        raise UsageError(f"{path}: the store holds CDR3s without the conserved C and F/W (convention "
                         f"{store.junction_convention!r}); ingest it again with --convention junction")
    return store


class StoreBackground(SampledBackground):
    """Sequences of a repclass store: each repertoire samples distinct junctions from the pool."""

    def __init__(self, path: Path, purge: re.Pattern[str] | None) -> None:
        import polars as pl

        store = junction_store(path)
        pool = pl.concat([table for _, table in store.iter_tables(["junction_aa", "v_call", "j_call"])])
        pool = pool.filter(pl.col("junction_aa").is_first_distinct())
        if purge is not None:
            pool = pool.filter(~pl.col("junction_aa").str.contains(purge.pattern))
        self.pool = pool.with_columns(pl.col("v_call").fill_null(""), pl.col("j_call").fill_null(""))
        self.path = path
        self.locus = None

    def draw(self, rng: np.random.Generator, n: int) -> "pl.DataFrame":
        if n > self.pool.height:
            raise UsageError(f"{self.path}: the store has {self.pool.height} distinct usable junctions, fewer than "
                             f"the {n} a repertoire needs; lower --sequences")
        return self.pool[rng.choice(self.pool.height, size=n, replace=False)]


class WholeRepertoires:
    """The repertoires of a repclass store, each kept as it is (SimulationConfig.whole_repertoires)."""

    def __init__(self, path: Path, purge: re.Pattern[str] | None) -> None:
        self.store = junction_store(path)
        self.purge = purge
        self.path = path
        self.locus = None

    def repertoire(self, sample_id: str, rng: np.random.Generator, config: SimulationConfig
                   ) -> tuple["pl.DataFrame", np.ndarray]:
        import polars as pl

        table = self.store.read(sample_id)
        table = table.select(c for c in ("junction_aa", "v_call", "j_call", "duplicate_count") if c in table.columns)
        if self.purge is not None:  # (a real repertoire's own motif occurrences go, the rest stays)
            table = table.filter(~pl.col("junction_aa").str.contains(self.purge.pattern))
        table = table.with_columns(*[pl.col(c).fill_null("") if c in table.columns else pl.lit("").alias(c)
                                     for c in ("v_call", "j_call")])
        if table.height == 0:
            raise UsageError(f"{self.path}: repertoire {sample_id} has no sequences left to implant into")
        counts = (table["duplicate_count"].fill_null(1).clip(lower_bound=1).to_numpy()
                  if "duplicate_count" in table.columns else np.ones(table.height, dtype=np.int64))
        return table.select("junction_aa", "v_call", "j_call"), counts


def make_background(config: SimulationConfig, purge: re.Pattern[str] | None
                    ) -> "SampledBackground | WholeRepertoires":
    """The background `config` asks for; `purge` (a motif pattern) drops junctions that hold a motif."""
    if config.whole_repertoires:
        return WholeRepertoires(config.background_store, purge)
    if config.background_store is not None:
        return StoreBackground(config.background_store, purge)
    return OlgaBackground(config.background_model, purge)
