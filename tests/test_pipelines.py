"""The pipeline steps: the Snakemake workflow, run for real on the tiny cohort, and the Nextflow
modules, whose script (and stub) blocks are rendered with concrete values and run for real the way
Nextflow runs them (inputs staged into a work folder, `bash -euo pipefail`). `nextflow run -stub`
itself runs only where `nextflow` is on PATH.

Both pipelines issue the same commands, so the Snakemake run and the module command lines must give
byte-identical stores, models, predictions and motif folders.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from repclass import __version__

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE_DIR = ROOT / "workflows" / "snakemake"  # Snakemake's standard layout: workflow/ and config/
NEXTFLOW_DIR = ROOT / "workflows" / "nextflow"
MODULES = ["ingest", "combine", "train", "predict", "motifs"]  # modules/local/repclass/<command>/
MODULES_DIR = NEXTFLOW_DIR / "modules" / "local" / "repclass"
BIN = Path(sys.executable).parent  # the environment's bin: repclass (and snakemake) live here

FOLDS = 3
TRAIN_ARGS = "--updates 20 --eval-every 10"
ATTENTION = 5
#: The explained repertoires are named, so that motifs never depends on how well a 20-update
#: model classifies (with no repertoire predicted positive, `repclass motifs` has nothing to explain),
#: nor on which fold holds them out (--include-training: motifs explains held-out ones by default).
MOTIF_SAMPLES = ("r01", "r02", "r03")
MOTIFS_ARGS = ("--motifs 1 --top-sequences 50 --ig-steps 8 --include-training "
               + " ".join(f"--sample {s}" for s in MOTIF_SAMPLES))
#: Snakemake's marker in directory() outputs; not written by repclass.
SNAKEMAKE_MARKER = ".snakemake_timestamp"


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _md5s(folder: Path) -> dict[str, str]:
    """md5 of every file under `folder` (or of `folder` itself when it is a file), by relative path."""
    if folder.is_file():
        return {"": hashlib.md5(folder.read_bytes()).hexdigest()}
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != SNAKEMAKE_MARKER}


def _sheet_ids(sheet: Path) -> list[str]:
    return [line.split("\t")[0] for line in sheet.read_text().splitlines()[1:] if line.strip()]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    from support.cohort import make_cohort

    # 10 small repertoires: every pipeline job runs (one ingest process per sample, three folds
    # with two classes in each split), at 10 start-ups of `repclass ingest` per pipeline, not 16
    sheet, reps, _ = make_cohort(tmp_path_factory.mktemp("cohort"), n_repertoires=10, n_sequences=300)
    assert shutil.which("repclass", path=str(BIN)), f"repclass is not installed in {BIN}"
    return sheet, reps


# ==============================================================================================
# Snakemake
# ==============================================================================================
@dataclass
class SnakemakeRun:
    work: Path
    config: Path
    result: subprocess.CompletedProcess

    @property
    def out(self) -> Path:
        return self.work / "results"

    @property
    def log(self) -> str:
        return self.result.stdout + self.result.stderr


def _snakemake(work: Path, config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("snakemake") is None:
        pytest.fail("snakemake is not installed; it is a test dependency: pip install -e '.[test]'")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEMAKE_DIR / "workflow" / "Snakefile"),
               "--configfile", str(config), "--cores", "2", "--directory", str(work), *args]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), stdin=subprocess.DEVNULL,
                          timeout=timeout)


def _write_config(path: Path, sheet: Path, reps: Path, **changes: Any) -> Path:
    import yaml

    config = yaml.safe_load((SNAKEMAKE_DIR / "config" / "config.yaml").read_text())  # the shipped config, adapted
    config.update(sheet=str(sheet), repertoires=str(reps), target="status", folds=FOLDS, seed=0,
                  attention=ATTENTION, device="cpu")
    config["threads"].update(ingest=1, train=1, predict=1, motifs=1)  # two jobs at a time on 2 cores
    config["extra"].update(train=TRAIN_ARGS, motifs=MOTIFS_ARGS)
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _job_counts(log: str) -> dict[str, int]:
    stats = log[log.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", stats, re.M)
            if m.group(1) != "total"}


@pytest.fixture(scope="module")
def snakemake_run(cohort, tmp_path_factory) -> SnakemakeRun:
    sheet, reps = cohort
    work = tmp_path_factory.mktemp("snakemake")
    config = _write_config(work / "config.yaml", sheet, reps)
    result = _snakemake(work, config, "--printshellcmds")
    run = SnakemakeRun(work=work, config=config, result=result)
    assert result.returncode == 0, run.log[-6000:]
    return run


@pytest.mark.slow
def test_snakemake_scatters_ingest_and_trains_one_job_per_fold(snakemake_run, cohort):
    assert _job_counts(snakemake_run.log) == {"ingest": len(_sheet_ids(cohort[0])), "combine": 1, "train": FOLDS,
                                              "predict": FOLDS, "motifs": FOLDS, "all": 1}
    for fold in range(1, FOLDS + 1):
        assert f"--folds {FOLDS} --fold {fold}" in snakemake_run.log


@pytest.mark.slow
def test_snakemake_passes_threads_and_extra_options(snakemake_run):
    commands = [m.group(1) for m in re.finditer(r"^(?:Shell command: )?(repclass .*?)\s*$", snakemake_run.log, re.M)]
    by_command: dict[str, list[str]] = {}
    for line in commands:
        by_command.setdefault(line.split()[1], []).append(line)
    assert all("--threads 1" in c and "--sample" in c for c in by_command["ingest"])
    assert all("--threads 1" in c and TRAIN_ARGS in c and "--seed 0" in c and "--device cpu" in c
               for c in by_command["train"])
    assert all(f"--attention {ATTENTION} --attention-out" in c and "--threads 1" in c for c in by_command["predict"])
    assert all(MOTIFS_ARGS in c and "--threads 1" in c for c in by_command["motifs"])
    assert [len(by_command[c]) for c in ("ingest", "combine", "train", "predict", "motifs")] == [10, 1, 3, 3, 3]
    assert all(re.search(r"(2> \S+\.log|> \S+\.log 2>&1)$", c) for c in commands)  # stderr -> the job's log


@pytest.mark.slow
def test_snakemake_parts_and_store_hold_every_sample(snakemake_run, cohort):
    from repclass.io.store import Store

    ids = _sheet_ids(cohort[0])
    for sample_id in ids:
        assert Store.open(snakemake_run.out / "parts" / f"{sample_id}.store").sample_ids == [sample_id]
    store = Store.open(snakemake_run.out / "cohort.store")
    assert store.sample_ids == sorted(ids)
    store.verify()
    status = dict(line.split("\t")[:2] for line in cohort[0].read_text().splitlines()[1:])
    assert store.labels("status") == status


@pytest.mark.slow
def test_snakemake_fold_models_test_every_sample_once(snakemake_run, cohort):
    test_folds: dict[str, int] = {}
    for fold in range(1, FOLDS + 1):
        model = snakemake_run.out / "models" / f"fold_{fold}"
        assert (model / "model.safetensors").stat().st_size > 0
        splits = json.loads((model / "model.json").read_text())["splits"]
        for sample_id, split in splits.items():
            if split == "test":
                assert sample_id not in test_folds, f"{sample_id} is in the test split of two folds"
                test_folds[sample_id] = fold
    assert sorted(test_folds) == sorted(_sheet_ids(cohort[0]))


@pytest.mark.slow
def test_snakemake_predictions_have_one_row_per_sample(snakemake_run, cohort):
    import polars as pl

    ids = sorted(_sheet_ids(cohort[0]))
    for fold in range(1, FOLDS + 1):
        base = snakemake_run.out / "predictions" / f"fold_{fold}"
        table = pl.read_csv(f"{base}.tsv", separator="\t")
        assert sorted(table["sample_id"].to_list()) == ids
        assert table["status:p(+)"].is_between(0, 1).all()
        attention = pl.read_csv(f"{base}.attention.tsv", separator="\t")
        assert attention.group_by("sample_id").len()["len"].to_list() == [ATTENTION] * len(ids)
        airr = pl.read_csv(f"{base}.attention.airr.tsv", separator="\t")
        assert airr.select(pl.col("repertoire_id").alias("sample_id"), "rank", "junction_aa").equals(
            attention.select("sample_id", "rank", "junction_aa"))
        assert "roc_auc" in json.loads(Path(f"{base}.metrics.json").read_text())["status"]


@pytest.mark.slow
def test_snakemake_motif_reports_exist(snakemake_run):
    for fold in range(1, FOLDS + 1):
        folder = snakemake_run.out / "motifs" / f"fold_{fold}"
        assert (folder / "report.html").stat().st_size > 0
        assert (folder / "motifs.tsv").exists() and (folder / "sequences.tsv").exists()
        log = (snakemake_run.out / "logs" / "motifs" / f"fold_{fold}.log").read_text()
        assert f"motifs/fold_{fold}/report.html" in log  # the path motifs prints on stdout


@pytest.mark.slow
def test_snakemake_logs_hold_each_jobs_stderr(snakemake_run, cohort):
    logs = snakemake_run.out / "logs"
    expected = ([f"ingest/{s}.log" for s in _sheet_ids(cohort[0])] + ["combine/cohort.log"]
                + [f"{rule}/fold_{i}.log" for rule in ("train", "predict", "motifs") for i in range(1, FOLDS + 1)])
    assert sorted(str(p.relative_to(logs)) for p in logs.rglob("*.log")) == sorted(expected)
    for name in expected:
        assert "repclass INFO: wrote " in (logs / name).read_text(), name


@pytest.mark.slow
def test_snakemake_rerun_has_nothing_to_do(snakemake_run):
    result = _snakemake(snakemake_run.work, snakemake_run.config, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_snakemake_run_leaves_no_temporary_files(snakemake_run):
    leftovers = [p for p in snakemake_run.out.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial")]
    assert leftovers == []


def test_snakemake_without_folds_trains_one_model(cohort, tmp_path):
    config = _write_config(tmp_path / "config.yaml", *cohort, folds=0, attention=0)
    result = _snakemake(tmp_path / "run", config, "--dry-run", "--printshellcmds")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert _job_counts(log) == {"ingest": len(_sheet_ids(cohort[0])), "combine": 1, "train": 1, "predict": 1,
                                "motifs": 1, "all": 1}
    assert "results/models/model" in log and "--fold" not in log
    assert "--attention" not in log and "results/predictions/model.tsv" in log


def test_snakemake_config_is_checked_against_its_schema(cohort, tmp_path):
    config = _write_config(tmp_path / "config.yaml", *cohort, foldz=3)  # a misspelt key
    result = _snakemake(tmp_path / "run", config, "--dry-run")
    assert result.returncode != 0 and "foldz" in result.stdout + result.stderr
    assert "No validator found" not in result.stderr  # the schema names a JSON Schema version jsonschema knows


@pytest.mark.parametrize("changes, message", [
    ({}, None),
    ({"attention": "many"}, "'many' is not of type 'integer'"),
    ({"device": "gpu"}, "'gpu' does not match"),
    ({"threads": {"train": 0}}, "0 is less than the minimum of 1"),
    ({"target": None}, "None is not of type 'string'"),
])
def test_snakemake_config_schema(changes, message):
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = yaml.safe_load((SNAKEMAKE_DIR / "config" / "config.yaml").read_text()) | changes
    schema = str(SNAKEMAKE_DIR / "workflow" / "schemas" / "config.schema.yaml")
    if message is None:
        validate(config, schema)  # the shipped config is valid
    else:
        with pytest.raises(WorkflowError, match=re.escape(message)):
            validate(config, schema)


def test_snakemake_example_data_config_runs_from_the_repository_root():
    """docs/pipelines.md's ready command on example_data/ (dry run: the whole DAG, every input found)."""
    import yaml

    config = SNAKEMAKE_DIR / "config" / "example_data.yaml"
    assert "--configfile workflows/snakemake/config/example_data.yaml" in (ROOT / "docs" / "pipelines.md").read_text()
    result = _snakemake(ROOT, config, "--dry-run")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    n_samples = len(_sheet_ids(ROOT / yaml.safe_load(config.read_text())["sheet"]))
    assert _job_counts(result.stdout + result.stderr) == {"ingest": n_samples, "combine": 1, "train": 1,
                                                         "predict": 1, "motifs": 1, "all": 1}


def test_snakemake_names_a_sample_without_a_file(cohort, tmp_path):
    sheet, reps = cohort
    partial = tmp_path / "reps"
    shutil.copytree(reps, partial)
    (partial / "r03.tsv").unlink()
    config = _write_config(tmp_path / "config.yaml", sheet, partial)
    result = _snakemake(tmp_path / "run", config, "--dry-run")
    assert result.returncode != 0
    assert "no repertoire file for sample(s) r03" in result.stdout + result.stderr


# ==============================================================================================
# Nextflow modules: parsed, rendered with concrete values, run
# ==============================================================================================
class Groovy:
    """Just enough Groovy to render an nf-core module's script block: `def x = <expr>` lines and
    the triple-quoted GString (`${expr}`, `$name.name`, `\\$`, `\\\\`), with expressions made of
    string literals, dotted names, `a ?: b` and `c ? a : b`. A name the test does not provide, or a
    null interpolated into the script, fails the test (Nextflow would print `null`)."""

    TOKEN = re.compile(r"\s*(?:('(?:[^'\\]|\\.)*')|(\"(?:[^\"\\]|\\.)*\")|(\?:|\?|:|\(|\))|([A-Za-z_][\w.]*)|(\d+))")

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = dict(scope)

    # -- values ----------------------------------------------------------------------------------
    def lookup(self, dotted: str) -> Any:
        head, *rest = dotted.split(".")
        if head in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[head]
        if head not in self.scope:
            raise KeyError(f"the module uses {head!r}, which this test does not provide")
        value = self.scope[head]
        for part in rest:
            value = value.get(part) if isinstance(value, dict) else getattr(value, part)
        return value

    @staticmethod
    def text(value: Any) -> str:
        if value is None:
            raise ValueError("null interpolated into the script")
        if isinstance(value, (list, tuple)):  # Nextflow's BlankSeparatedList of staged files
            return " ".join(str(v) for v in value)
        return str(value)

    def interpolate(self, template: str) -> str:
        out, i = [], 0
        while i < len(template):
            char = template[i]
            if char == "\\" and i + 1 < len(template) and template[i + 1] in "$\\\"'":
                out.append(template[i + 1])
                i += 2
            elif char == "$" and template[i + 1: i + 2] == "{":
                end = template.index("}", i)
                out.append(self.text(self.evaluate(template[i + 2: end])))
                i = end + 1
            elif char == "$" and re.match(r"[A-Za-z_]", template[i + 1: i + 2]):
                name = re.match(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", template[i + 1:]).group(0)
                out.append(self.text(self.lookup(name)))
                i += 1 + len(name)
            else:
                out.append(char)
                i += 1
        return "".join(out)

    # -- expressions -----------------------------------------------------------------------------
    def evaluate(self, expression: str) -> Any:
        tokens, position = [], 0
        expression = expression.strip()
        while position < len(expression):
            match = self.TOKEN.match(expression, position)
            assert match and match.end() > position, f"cannot parse {expression[position:]!r}"
            tokens.append(next(g for g in match.groups() if g is not None))
            position = match.end()
        value, rest = self._ternary(tokens)
        assert not rest, f"unparsed tokens {rest} in {expression!r}"
        return value()

    @staticmethod
    def truth(value: Any) -> bool:
        return value not in (None, "", 0, False) and value != [] and value != {}

    # The parser returns thunks: like Groovy, only the branch taken is evaluated.
    def _ternary(self, tokens: list[str]) -> tuple[Any, list[str]]:
        condition, tokens = self._elvis(tokens)
        if tokens[:1] != ["?"]:
            return condition, tokens
        yes, tokens = self._ternary(tokens[1:])
        assert tokens[:1] == [":"], "expected ':' in a ternary"
        no, tokens = self._ternary(tokens[1:])
        return (lambda: yes() if self.truth(condition()) else no()), tokens

    def _elvis(self, tokens: list[str]) -> tuple[Any, list[str]]:
        value, tokens = self._atom(tokens)
        while tokens[:1] == ["?:"]:
            other, tokens = self._atom(tokens[1:])
            value = (lambda left, right: lambda: (lambda v: v if self.truth(v) else right())(left()))(value, other)
        return value, tokens

    def _atom(self, tokens: list[str]) -> tuple[Any, list[str]]:
        token, rest = tokens[0], tokens[1:]
        if token == "(":
            value, rest = self._ternary(rest)
            assert rest[:1] == [")"]
            return value, rest[1:]
        if token.startswith("'"):
            return (lambda: token[1:-1].replace("\\'", "'")), rest
        if token.startswith('"'):
            return (lambda: self.interpolate(token[1:-1])), rest
        if token.isdigit():
            return (lambda: int(token)), rest
        return (lambda: self.lookup(token)), rest


@dataclass
class Output:
    pattern: str | None  # a path output's glob; None for a versions tuple
    emit: str | None
    optional: bool
    topic: str | None = None
    tool: str | None = None  # versions tuple: val('<tool>'), eval(<command>)
    command: str | None = None  # the eval() argument as written: a Groovy string literal


@dataclass
class Module:
    path: Path
    name: str
    labels: list[str]
    text: str
    sections: dict[str, str]
    inputs: list[tuple[str, str, str | None]]  # (val|path, name, stageAs)
    outputs: list[Output] = field(default_factory=list)

    @classmethod
    def parse(cls, path: Path) -> "Module":
        text = path.read_text()
        name = re.search(r"^process\s+(\w+)\s*\{", text, re.M).group(1)
        labels = re.findall(r"^\s*label\s+'(\w+)'", text, re.M)
        heads = list(re.finditer(r"^\s*(input|output|when|script|stub):\s*$", text, re.M))
        sections = {}
        for head, following in zip(heads, heads[1:] + [None]):
            end = following.start() if following else text.rindex("}")
            sections[head.group(1)] = text[head.end(): end]
        inputs = [(kind, input_name, stage) for kind, input_name, stage in re.findall(
            r"\b(val|path)\s*\(?\s*(\w+)\s*(?:,\s*stageAs:\s*'([^']+)')?\s*\)?", sections["input"])
                  if input_name not in ("val", "path", "tuple")]
        outputs = []
        for line in sections["output"].strip().splitlines():
            if line.strip().startswith("//"):
                continue
            emit = re.search(r"emit:\s*(\w+)", line)
            topic = re.search(r"topic:\s*(\w+)", line)
            versions = re.search(r"val\('(\w+)'\),\s*eval\((.+)\),\s*emit:", line)
            if versions:
                outputs.append(Output(None, emit.group(1) if emit else None, False, topic.group(1) if topic else None,
                                      tool=versions.group(1), command=versions.group(2)))
                continue
            pattern = re.search(r"path\s*\(?\s*\"([^\"]+)\"", line).group(1)
            outputs.append(Output(pattern, emit.group(1) if emit else None, "optional: true" in line))
        return cls(path=path, name=name, labels=labels, text=text, sections=sections, inputs=inputs,
                   outputs=outputs)

    def render(self, block: str, scope: dict[str, Any]) -> str:
        """The shell script Nextflow would run for `block` (script or stub) with these values."""
        body = self.sections[block]
        start, end = body.index('"""'), body.rindex('"""')
        groovy = Groovy(scope)
        for statement in body[:start].strip().splitlines():
            match = re.fullmatch(r"\s*def\s+(\w+)\s*=\s*(.+?)\s*", statement)
            assert match, f"{self.path}: cannot read {statement!r}"
            groovy.scope[match.group(1)] = groovy.evaluate(match.group(2))
        return textwrap.dedent(groovy.interpolate(body[start + 3: end])).strip() + "\n"


@dataclass
class Task:
    module: Module
    work: Path
    script: str
    result: subprocess.CompletedProcess
    scope: dict[str, Any] = field(default_factory=dict)

    def outputs(self, output: Output) -> list[Path]:
        return sorted(self.work.glob(output.pattern))

    def versions(self) -> dict[str, str]:
        """tool -> version, from the module's `versions` topic outputs: each eval() command
        rendered with the task's values and run in the task's folder after the script, as
        Nextflow does."""
        found = {}
        for output in self.module.outputs:
            if output.topic != "versions":
                continue
            groovy = Groovy(self.scope)
            # a GString is interpolated as a whole: its ${...} may hold literals with double quotes
            command = (groovy.interpolate(output.command[1:-1]) if output.command.startswith('"')
                       else groovy.evaluate(output.command))
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=self.work, capture_output=True,
                                    text=True, env=_env(), stdin=subprocess.DEVNULL, timeout=120)
            assert result.returncode == 0, f"{self.module.name}: eval({command}) failed: {result.stderr[-2000:]}"
            found[output.tool] = result.stdout.strip()
        return found


def _run_task(module: Module, work: Path, inputs: dict[str, Any], meta: dict[str, Any], *, args: str = "",
              cpus: int = 1, block: str = "script", use_gpu: bool = False) -> Task:
    """Stage inputs into `work` (symlinks, as Nextflow does), render the block and run it."""
    work.mkdir(parents=True)
    scope: dict[str, Any] = {"meta": meta, "task": {"cpus": cpus, "process": module.name, "attempt": 1,
                                                     "ext": {"args": args, "use_gpu": use_gpu}}}
    for kind, name, stage in module.inputs:
        if kind == "val" and name == "meta":
            continue
        value = inputs[name]
        if kind == "val":
            scope[name] = value
            continue
        staged = []
        for source in (value if isinstance(value, list) else [value]):
            target = work / (stage.replace("*", source.name) if stage else source.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
            staged.append(str(target.relative_to(work)))
        scope[name] = staged if isinstance(value, list) else staged[0]
    script = module.render(block, scope)
    (work / ".command.sh").write_text(script)
    result = subprocess.run(["bash", "-euo", "pipefail", ".command.sh"], cwd=work, capture_output=True, text=True,
                            env=_env(), stdin=subprocess.DEVNULL, timeout=600)
    return Task(module=module, work=work, script=script, result=result, scope=scope)


def _check_task(task: Task) -> None:
    import torch

    assert task.result.returncode == 0, f"{task.script}\n{task.result.stderr[-4000:]}"
    for output in task.module.outputs:
        if output.pattern and not output.optional:
            assert task.outputs(output), f"{task.module.name}: no output matches {output.pattern!r}"
    expected = {"repclass": __version__}
    if "process_gpu" in task.module.labels:  # results depend on torch and the device
        expected.update(torch=torch.__version__, device="cpu")
    assert task.versions() == expected


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return {name: Module.parse(MODULES_DIR / name / "main.nf") for name in MODULES}


@pytest.fixture(scope="module")
def module_tasks(cohort, modules, tmp_path_factory) -> dict[str, Task]:
    """The whole job through the modules' script blocks: ingest per sample, combine, train fold 1
    of 3, predict and motifs, each in its own work folder, with the Snakemake run's options."""
    sheet, reps = cohort
    work = tmp_path_factory.mktemp("nextflow_work")
    ids = _sheet_ids(sheet)
    files = {p.name.split(".")[0]: p for p in reps.iterdir()}

    def ingest(sample_id: str) -> Task:
        return _run_task(modules["ingest"], work / "ingest" / sample_id,
                         {"repertoire": files[sample_id], "sheet": sheet}, {"id": sample_id})

    with ThreadPoolExecutor(max_workers=2) as pool:
        ingested = list(pool.map(ingest, ids))
    tasks: dict[str, Task] = {f"ingest:{t.work.name}": t for t in ingested}
    for task in ingested:
        _check_task(task)
    parts = [t.outputs(t.module.outputs[0])[0] for t in ingested]
    tasks["combine"] = _run_task(modules["combine"], work / "combine", {"parts": parts}, {"id": "cohort"})
    _check_task(tasks["combine"])
    store = tasks["combine"].work / "cohort.store"
    meta = {"id": "fold_1", "fold": 1, "folds": FOLDS}
    tasks["train"] = _run_task(modules["train"], work / "train", {"store": store, "target": "status"}, meta,
                               args=f"--seed 0 {TRAIN_ARGS}")
    _check_task(tasks["train"])
    model = tasks["train"].work / "fold_1.model"
    scoring = {"model": model, "store": store}
    with ThreadPoolExecutor(max_workers=2) as pool:
        predict = pool.submit(_run_task, modules["predict"], work / "predict", scoring, meta,
                              args=f"--attention {ATTENTION}")
        motifs = pool.submit(_run_task, modules["motifs"], work / "motifs", scoring, meta,
                             args=f"--seed 0 {MOTIFS_ARGS}")
        tasks["predict"], tasks["motifs"] = predict.result(), motifs.result()
    return tasks


GROOVY_CASES = [
    # (expression or GString body, scope, rendered)
    ("task.ext.args ?: ''", {"task": {"ext": {}}}, ""),
    ("task.ext.prefix ?: \"${meta.id}\"", {"task": {"ext": {"prefix": None}}, "meta": {"id": "s1"}}, "s1"),
    ("meta.fold ? \"--fold ${meta.fold}\" : ''", {"meta": {"id": "x"}}, ""),  # untaken branch not evaluated
    ("meta.fold ? \"--fold ${meta.fold}\" : ''", {"meta": {"fold": 2}}, "--fold 2"),
    ("task.ext.use_gpu ? 'cuda' : 'cpu'", {"task": {"ext": {"use_gpu": True}}}, "cuda"),
]


@pytest.mark.parametrize("expression, scope, expected", GROOVY_CASES)
def test_groovy_renderer_evaluates_like_groovy(expression, scope, expected):
    assert Groovy(scope).evaluate(expression) == expected


def test_groovy_renderer_interpolates_like_nextflow():
    groovy = Groovy({"parts": ["parts/a.store", "parts/b.store"], "task": {"cpus": 3}, "meta": {"id": "s1"}})
    assert groovy.interpolate("x ${parts} --threads $task.cpus \\\\ \\$(v) '${meta.id}'") == \
        "x parts/a.store parts/b.store --threads 3 \\ $(v) 's1'"
    with pytest.raises(ValueError, match="null"):
        Groovy({"meta": {}}).interpolate("${meta.id}")
    with pytest.raises(KeyError, match="does not provide"):
        Groovy({}).interpolate("${sheet}")


@pytest.mark.parametrize("name", MODULES)
def test_module_has_the_nf_core_shape(modules, name):
    module = modules[name]
    assert module.name == f"REPCLASS_{name.upper()}"
    assert re.search(r'^\s*tag\s+"\$\{meta\.id\}"', module.text, re.M)
    assert {"process_single", "process_medium"} & set(module.labels)
    gpu = name in ("train", "predict", "motifs")
    if gpu:
        assert "process_gpu" in module.labels and "--device ${device}" in module.sections["script"]
    assert module.inputs[0][:2] == ("val", "meta") and "tuple val(meta)" in module.sections["input"]
    assert "task.ext.when == null || task.ext.when" in module.sections["when"]
    assert "task.ext.args ?: ''" in module.sections["script"] and "${args}" in module.sections["script"]
    if name != "combine":  # combine only copies files
        assert "--threads ${task.cpus}" in module.sections["script"]
    assert all(o.emit for o in module.outputs), "every output is named (emit:)"
    # versions on the `versions` topic (nf-core's convention since 2025), not a versions.yml file
    versions = {o.tool: o for o in module.outputs if o.topic == "versions"}
    assert sorted(versions) == (["device", "repclass", "torch"] if gpu else ["repclass"])
    assert all(o.emit == f"versions_{tool}" for tool, o in versions.items())
    assert versions["repclass"].command == "'repclass --version'"
    assert "versions.yml" not in module.text
    for output in module.outputs:  # explicit extensions, never a bare '*'
        assert output.pattern is None or re.search(r"\*\.[a-z]+", output.pattern), output.pattern
    # software: the module's own conda environment and a container of this release
    assert re.search(r'^\s*conda\s+"\$\{moduleDir\}/environment\.yml"$', module.text, re.M)
    container = re.search(r"^\s*container\s+(.+)$", module.text, re.M).group(1)
    images = {Groovy({"task": {"ext": {"use_gpu": use_gpu}}}).evaluate(container) for use_gpu in (False, True)}
    # fully qualified (a registry host first), so Nextflow's `docker.registry` is not put in front
    assert images == ({f"docker.io/library/repclass:{__version__}-cpu", f"docker.io/library/repclass:{__version__}-cuda"}
                      if gpu else {f"docker.io/library/repclass:{__version__}-cpu"})


@pytest.mark.parametrize("name", MODULES)
def test_module_meta_yml_describes_its_inputs_and_outputs(modules, name):
    import yaml

    module = modules[name]
    meta = yaml.safe_load((MODULES_DIR / name / "meta.yml").read_text())
    assert meta["name"] == f"repclass_{name}"
    assert meta["description"] and meta["keywords"] and meta["tools"][0]["repclass"]["licence"] == ["MIT"]
    inputs = []
    for channel in meta["input"]:
        for entry in (channel if isinstance(channel, list) else [channel]):
            inputs += list(entry)
    assert inputs == [input_name for _, input_name, _ in module.inputs]
    assert list(meta["output"]) == [o.emit for o in module.outputs]
    for output in module.outputs:
        names = [key for entry in meta["output"][output.emit][0] for key in entry]
        if output.pattern:
            assert names == ["meta", output.pattern]
        else:
            assert names == ["${task.process}", output.tool, output.command[1:-1]]
    topics = [[key for entry in channel for key in entry][1] for channel in meta["topics"]["versions"]]
    assert topics == [o.tool for o in module.outputs if o.topic == "versions"]


@pytest.mark.parametrize("name", MODULES)
def test_module_has_nf_test_stub_tests(modules, name):
    text = (MODULES_DIR / name / "tests" / "main.nf.test").read_text()
    assert 'script "../main.nf"' in text and f'process "REPCLASS_{name.upper()}"' in text
    stubs = re.findall(r'test\("([^"]+)"\)\s*\{\s*options "-stub"', text)
    assert stubs == [f"{name} - stub"]
    # each input channel of the module is given
    channels = len(re.findall(r"^\s*(?:tuple|path|val)\b", modules[name].sections["input"], re.M))
    for block in re.findall(r'process \{\s*"""(.*?)"""', text, re.S):
        assert re.findall(r"input\[(\d+)\]", block) == [str(i) for i in range(channels)]
    assert "snapshot(process.out" in text


def test_train_module_renders_fold_and_device_options(modules):
    module = modules["train"]
    inputs = {"meta": None, "store": "cohort.store", "target": "status"}
    base = {"task": {"cpus": 6, "process": module.name, "ext": {"args": "--seed 3"}}, **inputs}
    one = module.render("script", {**base, "meta": {"id": "model", "fold": 0, "folds": 0}})
    assert "--fold" not in one and "--out model.model" in one and "--device cpu" in one
    assert "--threads 6" in one and "--seed 3" in one and "--target 'status'" in one
    fold = module.render("script", {**base, "meta": {"id": "fold_2", "fold": 2, "folds": 5},
                                    "task": {**base["task"], "ext": {"args": None, "use_gpu": True}}})
    assert "--folds 5 --fold 2" in fold and "--device cuda" in fold and "--out fold_2.model" in fold
    prefixed = module.render("script", {**base, "meta": {"id": "x"}, "task": {**base["task"], "ext": {"prefix": "y"}}})
    assert "--out y.model" in prefixed


@pytest.mark.slow
def test_ingest_module_commands_write_one_sample_stores(module_tasks, cohort):
    from repclass.io.store import Store

    ids = _sheet_ids(cohort[0])
    for sample_id in ids:
        task = module_tasks[f"ingest:{sample_id}"]
        assert f"--sample '{sample_id}'" in task.script and "--threads 1" in task.script
        assert Store.open(task.work / f"{sample_id}.store").sample_ids == [sample_id]
        assert task.result.stdout == ""


@pytest.mark.slow
def test_combine_module_command_gathers_all_samples(module_tasks, cohort):
    from repclass.io.store import Store

    store = Store.open(module_tasks["combine"].work / "cohort.store")
    assert store.sample_ids == sorted(_sheet_ids(cohort[0]))
    assert "parts/r01.store" in module_tasks["combine"].script


@pytest.mark.slow
def test_train_predict_motifs_module_commands_run(module_tasks):
    import polars as pl

    for name in ("train", "predict", "motifs"):
        _check_task(module_tasks[name])
    assert "--folds 3 --fold 1" in module_tasks["train"].script
    predict = module_tasks["predict"]
    for output in predict.module.outputs:  # --attention given and the store has labels: all present
        assert output.pattern is None or predict.outputs(output), output.pattern
    assert pl.read_csv(predict.work / "fold_1.predictions.tsv", separator="\t").height == 10
    assert module_tasks["motifs"].result.stdout.strip() == "fold_1.motifs/report.html"


@pytest.mark.slow
def test_snakemake_and_nextflow_modules_give_the_same_bytes(snakemake_run, module_tasks):
    out = snakemake_run.out
    pairs = [
        (out / "parts" / "r01.store", module_tasks["ingest:r01"].work / "r01.store"),
        (out / "cohort.store", module_tasks["combine"].work / "cohort.store"),
        (out / "models" / "fold_1" / "model.safetensors", module_tasks["train"].work / "fold_1.model" / "model.safetensors"),
        (out / "models" / "fold_1" / "predictions.tsv", module_tasks["train"].work / "fold_1.model" / "predictions.tsv"),
        (out / "predictions" / "fold_1.tsv", module_tasks["predict"].work / "fold_1.predictions.tsv"),
        (out / "predictions" / "fold_1.attention.tsv", module_tasks["predict"].work / "fold_1.predictions.attention.tsv"),
        (out / "predictions" / "fold_1.attention.airr.tsv",
         module_tasks["predict"].work / "fold_1.predictions.attention.airr.tsv"),
        (out / "motifs" / "fold_1", module_tasks["motifs"].work / "fold_1.motifs"),
    ]
    for snakemake_output, nextflow_output in pairs:
        expected = _md5s(snakemake_output)
        assert expected and _md5s(nextflow_output) == expected, nextflow_output


@pytest.mark.parametrize("name", MODULES)
def test_stub_block_creates_every_declared_output(modules, name, tmp_path):
    module = modules[name]
    fake = tmp_path / "inputs"
    fake.mkdir()
    (fake / "samples.tsv").write_text("sample_id\tstatus\ns1\t+\n")
    (fake / "s1.tsv").write_text("")
    for folder in ("s1.store", "s2.store", "cohort.store", "m.model"):
        (fake / folder).mkdir()
    values = {"repertoire": fake / "s1.tsv", "sheet": fake / "samples.tsv",
              "parts": [fake / "s1.store", fake / "s2.store"], "store": fake / "cohort.store",
              "model": fake / "m.model", "target": "status"}
    task = _run_task(module, tmp_path / "work", values, {"id": "s1", "fold": 1, "folds": 3}, block="stub")
    _check_task(task)
    for output in module.outputs:  # a stub touches optional outputs too
        assert output.pattern is None or task.outputs(output), output.pattern


@pytest.mark.nextflow
@pytest.mark.skipif(shutil.which("nextflow") is None, reason="nextflow is not on PATH")
def test_nextflow_stub_run(cohort, tmp_path):
    sheet, reps = cohort
    command = ["nextflow", "run", str(NEXTFLOW_DIR / "main.nf"), "-stub", "-profile", "test",
               "--sheet", str(sheet), "--repertoires", str(reps), "--target", "status", "--folds", str(FOLDS),
               "--outdir", str(tmp_path / "results")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=_env(),
                            stdin=subprocess.DEVNULL, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    results = tmp_path / "results"
    assert (results / "cohort.store" / "manifest.json").exists()
    for fold in range(1, FOLDS + 1):
        assert (results / "models" / f"fold_{fold}.model" / "model.safetensors").exists()
        assert (results / "predictions" / f"fold_{fold}.predictions.tsv").exists()
        assert (results / "motifs" / f"fold_{fold}.motifs" / "report.html").exists()
    assert (results / "pipeline_info" / "software_versions.yml").read_text().count("repclass: ") == 5
