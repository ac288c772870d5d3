"""The prepared GPU check must keep working: its CPU dry run, with small sizes."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_dry_run(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--out",
                             str(tmp_path / "gpu.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| forward fp32 |" in result.stdout and "| update fp32 ms |" in result.stdout
    assert (tmp_path / "gpu.json").exists()
