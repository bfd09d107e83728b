"""repo_ray.algos is pure math: importing it must not import Ray (CPU only)."""

import subprocess
import sys


def test_importing_algos_does_not_import_ray():
    code = "import repo_ray.algos, sys; assert 'ray' not in sys.modules, 'ray was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
