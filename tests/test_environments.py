"""The ways to install repclass agree with pyproject.toml, and the built wheel works on its own.

pyproject.toml is the one source of truth for dependencies; environment.yml, the bioconda-style
recipe, the container recipe, the Makefile, the Nextflow modules' environments and the Snakemake
rules are checked against it here (same packages, same bounds), so that adding a dependency to
pyproject.toml without the others fails a test.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from repclass import __version__

ROOT = Path(__file__).resolve().parents[1]
#: PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
#: Packages on PyPI only: environment.yml installs them through its `pip:` section.
PIP_ONLY = {"tidytcells"}
#: Conda packages that are the environment, not repclass's dependencies.
TOOLING = {"python", "pip", "setuptools"}
COMMANDS = ("ingest", "combine", "train", "predict", "motifs")


def _dependencies() -> dict[str, SpecifierSet]:
    """pyproject's run dependencies, by PyPI name (read afresh: others add dependencies)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {r.name.lower(): r.specifier for r in requirements}


def _conda_specs(entries: list[str]) -> dict[str, SpecifierSet]:
    """`name >=1.2,<2` (a conda match spec, optionally `channel::name`) -> {name: specifier}."""
    specs = {}
    for entry in entries:
        match = re.fullmatch(r"(?:[\w-]+::)?([A-Za-z0-9_.-]+)\s*(.*)", entry.strip())
        assert match, f"cannot read the conda spec {entry!r}"
        spec = match.group(2).replace(" ", "")
        if re.fullmatch(r"=[\w.]+", spec):  # conda's `=1.2` is the fuzzy `1.2.*`
            spec = f"={spec}.*"
        specs[match.group(1).lower()] = SpecifierSet(spec)
    return specs


def _environment_yml(path: Path) -> tuple[dict[str, SpecifierSet], dict[str, SpecifierSet]]:
    """(conda packages, pip packages) of a conda environment file."""
    environment = yaml.safe_load(path.read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = [p for d in environment["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]
    return _conda_specs(conda), {Requirement(p).name.lower(): Requirement(p).specifier for p in pip}


def _recipe() -> dict:
    """recipe/meta.yaml with its Jinja rendered just enough for YAML: `set` lines applied."""
    text = (ROOT / "recipe" / "meta.yaml").read_text()
    variables = dict(re.findall(r'{%\s*set\s+(\w+)\s*=\s*"([^"]*)"\s*%}', text))
    text = re.sub(r"{%.*?%}", "", text)
    text = re.sub(r"{{\s*(\w+)\s*}}", lambda m: variables.get(m.group(1), m.group(1)), text)
    text = re.sub(r"{{.*?}}", "jinja", text)
    return yaml.safe_load(text)


def _check_agreement(where: str, found: dict[str, SpecifierSet], expected: dict[str, SpecifierSet]) -> None:
    missing = sorted(set(expected) - set(found))
    assert not missing, f"{where} lacks {missing} (pyproject.toml has them)"
    extra = sorted(set(found) - set(expected) - TOOLING)
    assert not extra, f"{where} has {extra}, which pyproject.toml does not declare"
    for name, specifier in expected.items():
        assert found[name] == specifier, \
            f"{where}: {name} {found[name] or '(no bound)'} but pyproject.toml says {specifier or '(no bound)'}"


def _as_conda(dependencies: dict[str, SpecifierSet]) -> dict[str, SpecifierSet]:
    return {CONDA_NAMES.get(name, name): spec for name, spec in dependencies.items() if name not in PIP_ONLY}


def _requires_python() -> SpecifierSet:
    return SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])


def test_conversion_helpers_read_what_they_are_given():
    assert _conda_specs(["pytorch >=2.3", "bioconda::repclass =0.1.0", "numpy >=1.26,<3"]) == {
        "pytorch": SpecifierSet(">=2.3"), "repclass": SpecifierSet("==0.1.0.*"), "numpy": SpecifierSet(">=1.26,<3")}
    with pytest.raises(AssertionError, match="lacks"):
        _check_agreement("x", {"a": SpecifierSet(">=1")}, {"a": SpecifierSet(">=1"), "b": SpecifierSet()})
    with pytest.raises(AssertionError, match="pyproject.toml says >=2"):
        _check_agreement("x", {"a": SpecifierSet(">=1")}, {"a": SpecifierSet(">=2")})
    with pytest.raises(AssertionError, match="does not declare"):
        _check_agreement("x", {"a": SpecifierSet(), "c": SpecifierSet()}, {"a": SpecifierSet()})


def test_environment_yml_agrees_with_pyproject():
    conda, pip = _environment_yml(ROOT / "environment.yml")
    dependencies = _dependencies()
    _check_agreement("environment.yml", conda, _as_conda(dependencies))
    _check_agreement("environment.yml (pip:)", pip, {n: s for n, s in dependencies.items() if n in PIP_ONLY})
    assert conda["python"] == _requires_python()
    channels = yaml.safe_load((ROOT / "environment.yml").read_text())["channels"]
    assert channels == ["conda-forge", "bioconda"]


def test_recipe_agrees_with_pyproject():
    recipe = _recipe()
    assert recipe["package"] == {"name": "repclass", "version": __version__}
    requirements = recipe["requirements"]
    run = _conda_specs(requirements["run"])
    assert run.pop("python") == _requires_python()
    _check_agreement("recipe/meta.yaml run:", run, _as_conda(_dependencies()) | {
        name: spec for name, spec in _dependencies().items() if name in PIP_ONLY})
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    host = _conda_specs(requirements["host"])
    for requirement in map(Requirement, build_system):
        assert host[requirement.name] == requirement.specifier, f"recipe host: {requirement}"
    assert recipe["build"]["noarch"] == "python"
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["repclass"]
    assert recipe["build"]["entry_points"] == [f"repclass = {entry}"]


def test_container_recipe_installs_pyproject_with_its_torch_bound():
    text = (ROOT / "Dockerfile").read_text()
    torch = re.search(r'^ARG TORCH_SPEC="([^"]+)"', text, re.M).group(1)
    assert Requirement(torch).specifier == _dependencies()["torch"]
    # every other dependency comes from pyproject.toml itself
    assert re.search(r"^COPY pyproject\.toml README\.md /src/", text, re.M)
    assert re.search(r"pip install /src\b", text)
    # one file, two images: the variant is a build argument
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert "cpu)" in text and "cuda)" in text
    python = Version(re.search(r"^ARG PYTHON_VERSION=([\d.]+)$", text, re.M).group(1) + ".0")
    assert python in _requires_python()


def test_makefile_torch_fallback_adds_only_pytorchs_cpu_index():
    text = (ROOT / "Makefile").read_text()
    assert "--index-url" not in text.replace("--extra-index-url", ""), "the default index must stay pip's own"
    assert re.findall(r"--extra-index-url\s+([^\s;]+)", text) == ["https://download.pytorch.org/whl/cpu"]
    assert "pypi.org" not in text
    torch = _dependencies()["torch"]
    for spec in re.findall(r'"(torch[^"]*)"', text):
        requirement = Requirement(spec)
        if str(requirement.specifier).startswith("=="):  # the pinned local wheel must satisfy the bound
            assert Version(str(requirement.specifier)[2:]) in torch, spec
        else:
            assert requirement.specifier == torch, f"Makefile installs {spec!r}; pyproject.toml says torch{torch}"


@pytest.mark.parametrize("command", COMMANDS)
def test_nextflow_module_environment_pins_this_version(command):
    folder = ROOT / "workflows" / "nextflow" / "modules" / "local" / "repclass" / command
    environment = yaml.safe_load((folder / "environment.yml").read_text())
    assert environment["channels"] == ["conda-forge", "bioconda"]
    assert environment["dependencies"] == [f"bioconda::repclass={__version__}"]
    main = (folder / "main.nf").read_text()
    assert re.search(r'^\s*conda\s+"\$\{moduleDir\}/environment\.yml"', main, re.M)
    images = re.findall(r"repclass:([\w.]+)-(cpu|cuda)", main)
    assert {version for version, _ in images} == {__version__}, images


def test_snakemake_rules_name_the_environment_and_container():
    text = (ROOT / "workflows" / "snakemake" / "Snakefile").read_text()
    rules = re.findall(r"^rule (\w+):", text, re.M)
    bodies = re.split(r"^rule \w+:", text, flags=re.M)[1:]
    for rule, body in zip(rules, bodies):
        if rule == "all":
            continue
        assert re.search(r"^\s+conda:\s*\n\s+CONDA_ENV", body, re.M), f"rule {rule} has no conda:"
        assert re.search(r"^\s+container:\s*\n\s+", body, re.M), f"rule {rule} has no container:"
    assert f'IMAGE_VERSION = "{__version__}"' in text
    config = yaml.safe_load((ROOT / "workflows" / "snakemake" / "config.yaml").read_text())
    assert (config["container_cpu"], config["container_cuda"]) == (
        f"docker://repclass:{__version__}-cpu", f"docker://repclass:{__version__}-cuda")
    assert (ROOT / "workflows" / "snakemake" / "envs" / "repclass.yml").exists()
    conda, pip = _environment_yml(ROOT / "workflows" / "snakemake" / "envs" / "repclass.yml")
    assert conda == {"repclass": SpecifierSet(f"=={__version__}.*")} and not pip


# ----------------------------------------------------------------------------------------------
# The wheel, installed on its own, runs the demo
# ----------------------------------------------------------------------------------------------
def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_environment_and_runs_the_demo(tmp_path):
    # Build from a copy of the sources, so that concurrent work in the checkout (build/,
    # *.egg-info) is neither read nor written; offline, with the setuptools already installed.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "repclass", source / "repclass", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(source)])
    (wheel,) = wheels.glob("repclass-*.whl")
    assert wheel.name == f"repclass-{__version__}-py3-none-any.whl"

    # A fresh virtual environment that sees the already-installed dependencies through a .pth
    # (paths only: the .pth files there, among them the checkout's editable install, stay
    # unprocessed), so nothing is downloaded; repclass itself comes from the wheel alone.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               POLARS_MAX_THREADS="1")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], env=env)
    location = _run([str(python), "-c", "import repclass; print(repclass.__file__)"], env=env,
                    cwd=tmp_path).stdout.strip()
    assert Path(location).is_relative_to(site), f"repclass imported from {location}, not from the wheel"
    repclass = venv / "bin" / "repclass"
    assert _run([str(repclass), "--version"], env=env).stdout.strip() == __version__

    # The demo (scripts/demo.sh), with few updates, on the bundled example cohort
    data, out = ROOT / "example_data", tmp_path / "demo"
    _run([str(repclass), "ingest", str(data / "samples.tsv"), str(data / "repertoires"),
          "--out", str(out / "cohort.store")], env=env, cwd=tmp_path)
    _run([str(repclass), "train", str(out / "cohort.store"), "--target", "status", "--out", str(out / "model"),
          "--updates", "20", "--eval-every", "10", "--sequences-per-bag", "500", "--seed", "0", "--device", "cpu"],
         env=env, cwd=tmp_path)
    _run([str(repclass), "predict", str(out / "model"), str(out / "cohort.store"), "--out",
          str(out / "predictions.tsv"), "--attention", "5", "--device", "cpu"], env=env, cwd=tmp_path)
    report = _run([str(repclass), "motifs", str(out / "model"), str(out / "cohort.store"), "--out",
                   str(out / "motifs"), "--sample", "sample_01", "--include-training", "--top-sequences", "50",
                   "--motifs", "1",
                   "--ig-steps", "4", "--device", "cpu"], env=env, cwd=tmp_path).stdout.strip()
    assert Path(report).resolve() == (out / "motifs" / "report.html").resolve()
    predictions = (out / "predictions.tsv").read_text().splitlines()
    assert len(predictions) == 1 + 40
