"""repclass.compute.cpus: thread defaults that follow the CPUs a job may use and survive a shared machine."""
import os
import subprocess
import sys

import pytest

from repclass.compute import cpus


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "400000 100000\n"}, 4.0),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_quota_v1_and_v2(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpus._cgroup_quota(tmp_path) == expected


def test_available_cpus_is_capped_by_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(cpus, "_cgroup_quota", lambda: None)
    assert cpus.available_cpus() == 8
    monkeypatch.setattr(cpus, "_cgroup_quota", lambda: 2.5)  # SLURM --cpus-per-task / docker --cpus
    assert cpus.available_cpus() == 2
    monkeypatch.setattr(cpus, "_cgroup_quota", lambda: 0.5)
    assert cpus.available_cpus() == 1


def _child_environment(arguments: list[str], env: dict[str, str]) -> dict[str, str]:
    code = ("import json, os, sys; from repclass.compute.cpus import configure_threads; "
            "configure_threads(int(sys.argv[1]) if len(sys.argv) > 1 else None); "
            "print(json.dumps({k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'POLARS_MAX_THREADS', "
            "'OMP_WAIT_POLICY')}))")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS", "OMP_WAIT_POLICY",
                          cpus.POLICY_SWITCH)}
    out = subprocess.run([sys.executable, "-c", code, *arguments], env={**clean, **env}, capture_output=True,
                         text=True, check=True)
    import json

    return json.loads(out.stdout)


def test_defaults_threads_option_and_user_settings():
    usable = str(cpus.available_cpus())
    assert _child_environment([], {}) == {"OMP_NUM_THREADS": usable, "POLARS_MAX_THREADS": usable,
                                          "OMP_WAIT_POLICY": "PASSIVE"}
    # --threads wins over everything, up to the CPUs available (issue 33: 10,000 threads took minutes)
    assert _child_environment(["1"], {"OMP_NUM_THREADS": "7"})["OMP_NUM_THREADS"] == "1"
    assert _child_environment(["10000"], {})["OMP_NUM_THREADS"] == usable
    # what the user exported is kept
    assert _child_environment([], {"OMP_NUM_THREADS": "7", "OMP_WAIT_POLICY": "ACTIVE"}) == {
        "OMP_NUM_THREADS": "7", "POLARS_MAX_THREADS": usable, "OMP_WAIT_POLICY": "ACTIVE"}
    # the escape hatch keeps torch's and OpenMP's own defaults
    assert _child_environment([], {cpus.POLICY_SWITCH: "off"}) == {
        "OMP_NUM_THREADS": None, "POLARS_MAX_THREADS": None, "OMP_WAIT_POLICY": None}


def test_cli_sets_thread_environment_before_torch_loads():
    # `repclass train` with no store fails on usage after the eager --threads callback has run
    code = ("import sys; from repclass.cli import main; sys.argv = ['repclass', 'train']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "import os; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["PASSIVE", "False"]
