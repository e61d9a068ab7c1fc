"""Lightning DDP through scvi-tools' trainer: a 2-process CPU run trains and embeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


@pytest.mark.slow
def test_two_process_cpu_ddp_trains(tmp_path):
    out = tmp_path / "latent.npy"
    env = {**os.environ, "SCVI_NETWORKVI_OFFLINE": "1", "SCVI_NETWORKVI_DATA_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    latent = np.load(out)
    info = json.loads(Path(str(out) + ".json").read_text())
    assert info["world_size"] == 2 and info["epochs"] == 2
    assert latent.shape[0] == 400 and np.isfinite(latent).all()
