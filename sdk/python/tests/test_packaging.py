"""`pip install ./sdk/python` works offline (no index at all) in a fresh venv, and the installed
package imports from site-packages with no dependency."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SDK = Path(__file__).resolve().parents[1]


def test_pip_install_offline(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-cache-dir", str(SDK)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import kiln, importlib.metadata as m; print(kiln.__file__); print(m.requires('kiln-sdk'))"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    path, requires = out.stdout.splitlines()
    assert path.startswith(str(venv)) and "site-packages" in path, path
    assert requires == "None", requires
