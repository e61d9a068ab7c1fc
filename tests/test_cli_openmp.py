"""The command line lets torch's OpenMP threads sleep while they wait (its own process only, never a user's choice)."""

from __future__ import annotations

import subprocess
import sys

from scvi_networkvi.__main__ import openmp_threads_sleep


def test_passive_wait_policy_unless_the_user_chose_one():
    environ: dict[str, str] = {}
    assert openmp_threads_sleep(environ) and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        environ = dict(chosen)
        assert not openmp_threads_sleep(environ) and environ == chosen


def test_command_line_sets_it_before_torch_is_imported():
    code = (
        "import os, sys; from scvi_networkvi.__main__ import main; os.environ.pop('OMP_WAIT_POLICY', None); "
        "os.environ.pop('GOMP_SPINCOUNT', None); main(['list']); "
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["PASSIVE", "False"]  # set, and `list` never loaded torch
