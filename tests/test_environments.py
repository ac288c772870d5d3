"""The ways to install repclass agree with pyproject.toml, and the built wheel works on its own.

pyproject.toml is the one source of truth for dependencies; environment.yml, the bioconda-style
recipe, the container recipe, the Makefile, the Nextflow modules' environments and the Snakemake
rules are checked against it here (same packages, same bounds), so that adding a dependency to
pyproject.toml without the others fails a test.
"""
from __future__ import annotations

import os
import re
import subprocess
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


def _extra(name: str) -> dict[str, SpecifierSet]:
    """pyproject's optional dependencies `name`, by PyPI name."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {Requirement(text).name.lower(): Requirement(text).specifier for text in extras[name]}


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
    _check_agreement("environment.yml (pip:)", pip, {n: s for n, s in dependencies.items() if n in PIP_ONLY}
                     | _extra("simulate"))  # olga, so that `repclass simulate` works
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


def test_recipe_follows_the_bioconda_linters_rules():
    recipe = _recipe()
    about = recipe["about"]
    assert re.fullmatch(r"https://\S+", about["home"])
    assert about["license"] == "MIT" and (ROOT / about["license_file"]).is_file()
    # a release tarball and its checksum: a placeholder of 64 zeros until the release
    source = recipe["source"]
    assert source["url"].startswith("https://") and source["url"].endswith(f"-{__version__}.tar.gz")
    assert re.fullmatch(r"[0-9a-f]{64}", source["sha256"])
    assert "path" not in source
    assert recipe["test"]["commands"] and recipe["build"]["run_exports"]
    maintainers = recipe["extra"]["recipe-maintainers"]
    assert maintainers and all(re.fullmatch(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}", m) for m in maintainers)
    # tidytcells is on PyPI only: the recipe says so, and what to do about it
    text = (ROOT / "recipe" / "meta.yaml").read_text()
    assert "tidytcells" in text.split("{% set")[0] and "grayskull pypi tidytcells" in text


def test_container_recipe_installs_pyproject_with_its_torch_bound():
    text = (ROOT / "Dockerfile").read_text()
    torch = re.search(r'^ARG TORCH_SPEC="([^"]+)"', text, re.M).group(1)
    assert Requirement(torch).specifier == _dependencies()["torch"]
    # every other dependency comes from pyproject.toml itself, with olga (`simulate`) besides
    assert re.search(r"^COPY pyproject\.toml README\.md LICENSE /src/", text, re.M)
    assert re.search(r'pip install "/src\[simulate\]"', text)
    # one file, two images: the variant is a build argument
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert "cpu)" in text and "cuda)" in text
    python = Version(re.search(r"^ARG PYTHON_VERSION=([\d.]+)$", text, re.M).group(1) + ".0")
    assert python in _requires_python()


def test_container_runs_as_a_user_with_an_entry_point_and_oci_labels():
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"useradd\b.*\brepclass\b", text)
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/repclass-entrypoint"\]$', text, re.M)
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert arguments["VERSION"] == __version__
    labels = dict(re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', text))
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE_URL}"
    assert arguments["SOURCE_URL"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"] == tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["license"]
    # the build context holds what the image copies
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {"!pyproject.toml", "!README.md", "!LICENSE", "!repclass/"} <= set(ignore)


def test_container_entry_point_runs_repclass_or_the_command_given(tmp_path):
    text = (ROOT / "Dockerfile").read_text()
    script = re.search(r"RUN printf '%s\\n' (.*?) > /usr/local/bin/repclass-entrypoint", text, re.S).group(1)
    lines = re.findall(r"'([^']*)'", script)
    entry = tmp_path / "entrypoint"
    entry.write_text("\n".join(lines) + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "repclass"
    fake.write_text('#!/bin/sh\necho "repclass $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}

    def run(*args: str) -> str:
        return subprocess.run(["sh", str(entry), *args], capture_output=True, text=True, env=env,
                              check=True).stdout.strip()

    assert run("ingest", "a.tsv") == "repclass ingest a.tsv"   # `docker run IMAGE ingest ...`
    assert run("--version") == "repclass --version"
    assert run("repclass", "train") == "repclass train"        # the pipelines' commands as they are
    assert run("echo", "bash -c works") == "bash -c works"
    assert run() == "repclass"


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


def test_citation_file_is_valid_citation_file_format():
    """CITATION.cff: the keys CFF 1.2.0 requires, the software as it is released, and DeepRC's paper."""
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(citation)
    assert all(isinstance(a, dict) and ("name" in a or "family-names" in a) for a in citation["authors"])
    assert citation["type"] == "software" and citation["version"] == __version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert citation["license"] == project["license"]
    (paper,) = [r for r in citation["references"] if r["type"] == "conference-paper"]
    assert paper["title"] == "Modern Hopfield Networks and Attention for Immune Repertoire Classification"
    assert paper["authors"][0] == {"family-names": "Widrich", "given-names": "Michael"} and paper["year"] == 2020
    assert {"title", "authors", "type"} <= set(paper)


def test_licence_file_is_the_mit_licence_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "repclass developers" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


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
    text = (ROOT / "workflows" / "snakemake" / "workflow" / "Snakefile").read_text()
    rules = re.findall(r"^rule (\w+):", text, re.M)
    bodies = re.split(r"^rule \w+:", text, flags=re.M)[1:]
    for rule, body in zip(rules, bodies):
        if rule == "all":
            continue
        assert re.search(r"^\s+conda:\s*\n\s+CONDA_ENV", body, re.M), f"rule {rule} has no conda:"
        assert re.search(r"^\s+container:\s*\n\s+", body, re.M), f"rule {rule} has no container:"
    assert f'IMAGE_VERSION = "{__version__}"' in text
    config = yaml.safe_load((ROOT / "workflows" / "snakemake" / "config" / "config.yaml").read_text())
    # fully qualified: the name `docker build -t repclass:<version>-cpu` gives, with Docker's registry
    assert (config["container_cpu"], config["container_cuda"]) == (
        f"docker://docker.io/library/repclass:{__version__}-cpu", f"docker://docker.io/library/repclass:{__version__}-cuda")
    conda, pip = _environment_yml(ROOT / "workflows" / "snakemake" / "workflow" / "envs" / "repclass.yml")
    assert conda == {"repclass": SpecifierSet(f"=={__version__}.*")} and not pip
