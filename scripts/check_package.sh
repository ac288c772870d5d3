#!/usr/bin/env bash
# The packages a release would ship, checked the way a user meets them (a CI step: `make
# package-check`; nothing is uploaded anywhere):
#
#   1. `python -m build` makes the sdist and, from it, the wheel (so the sdist is complete enough
#      to build from); `twine check --strict` checks both (metadata, README rendering);
#   2. a fresh virtual environment gets PyTorch's CPU build first, then the wheel with its
#      dependencies from the package index, and nothing from this checkout;
#   3. the demo (scripts/demo.sh) runs with that environment's `repclass`, from a folder outside
#      the checkout's package: every command, with a shorter training and motif search
#      (PACKAGE_CHECK_DEMO=full runs it as `make demo` does, two minutes more).
#
# Needs only python3 >= 3.10 and the package index: build and twine go into a virtual
# environment of their own. Usage: scripts/check_package.sh [WORK_DIR] (default: a temporary
# folder, removed at the end; dist/ of the checkout is not touched).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=${1:-}
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/repclass-package.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start )) s)"; }

step "build and twine into $work/tools"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q "build>=1.2" "twine>=6.1"

# From a copy of the tracked sources (git's view where there is one), so that build/, *.egg-info
# or half-edited files of a working checkout neither leak into the packages nor get written.
step "sources"
mkdir -p "$work/src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - 2>/dev/null) \
        | tar -xf - -C "$work/src"
else
    (cd "$root" && tar -cf - --exclude=.venv --exclude=.git --exclude='*.egg-info' --exclude=build --exclude=dist .) \
        | tar -xf - -C "$work/src"
fi

step "python -m build"
"$work/tools/bin/python" -m build --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; exit 1; }
version=$(cd "$root" && "$python" -c "import re; print(re.search(r'__version__ = \"([^\"]+)\"', open('repclass/_version.py').read()).group(1))")
sdist="$work/dist/repclass-$version.tar.gz"
wheel="$work/dist/repclass-$version-py3-none-any.whl"
test -f "$sdist" && test -f "$wheel" || { ls -l "$work/dist"; echo "expected $sdist and $wheel" >&2; exit 1; }
"$work/tools/bin/python" -m twine check --strict "$sdist" "$wheel"
# What a user relies on being inside: the licence, the package data, no tests or example data.
"$work/tools/bin/python" - "$sdist" "$wheel" <<'PY'
import sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
names = tarfile.open(sdist).getnames()
assert any(n.endswith("/LICENSE") for n in names), "the sdist lacks LICENSE"
wheel_names = zipfile.ZipFile(wheel).namelist()
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel_names), "the wheel lacks LICENSE"
assert "repclass/cli.py" in wheel_names and not any(n.startswith("tests/") for n in wheel_names)
metadata = zipfile.ZipFile(wheel).read(next(n for n in wheel_names if n.endswith(".dist-info/METADATA"))).decode()
assert "License-Expression: MIT" in metadata, "the wheel's metadata names no licence"
print(f"sdist: {len(names)} files; wheel: {len(wheel_names)} files; licence: MIT")
PY
echo "sha256 of the sdist (recipe/meta.yaml's source at a release): $(sha256sum "$sdist" | cut -d' ' -f1)"

# torch first, the CPU build (as `make setup` does): a local wheel when pip finds one offline,
# else PyTorch's CPU index as an extra index.
step "a fresh environment: torch (CPU), then the wheel"
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip -q)
# (--no-deps: torch's own dependencies come with the wheel's, from the index.)
if ! "${pip[@]}" install --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    "${pip[@]}" install "torch>=2.3" --extra-index-url https://download.pytorch.org/whl/cpu
fi
"${pip[@]}" install "$wheel"

step "the demo, with the installed repclass"
cd "$work"
unset PYTHONPATH VIRTUAL_ENV
location=$("$work/venv/bin/python" -c "import repclass; print(repclass.__file__)")
case "$location" in
    "$work/venv/"*) echo "repclass $("$work/venv/bin/repclass" --version) from $location" ;;
    *) echo "repclass imported from $location, not from the installed wheel" >&2; exit 1 ;;
esac
# demo.sh runs from the folder above its own: a copy holding only the example data and scripts.
mkdir -p "$work/demo-src"
cp -r "$root/example_data" "$root/scripts" "$work/demo-src/"
if [ "${PACKAGE_CHECK_DEMO:-quick}" != full ]; then
    export DEMO_TRAIN_ARGS="--updates 50 --eval-every 10 --sequences-per-bag 2000"
    export DEMO_MOTIFS_ARGS="--sample sample_01 --include-training --top-sequences 50 --motifs 1 --ig-steps 4"
fi
PATH="$work/venv/bin:$PATH" bash "$work/demo-src/scripts/demo.sh" "$work/demo" 2>"$work/demo.stderr" \
    | tee "$work/demo.log" || { tail -40 "$work/demo.stderr"; exit 1; }
test -s "$work/demo/motifs/report.html" && test -s "$work/demo/predictions.tsv"
step "done: packages build, pass twine check, install and run the demo"
