"""``emseg gmm fit`` on a small table starts fast: no numba, scipy or pyarrow on its path
(issue 15; the timing against ``import numpy`` is in benchmarks/bench_table.py)."""

import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_small_table_fit_loads_no_numba(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (75, 2)), rng.normal(5, 1, (75, 2))])
    path = tmp_path / "small.csv"
    path.write_text("a,b,name\n" + "".join(f"{a!r},{b!r},r{i}\n"
                                           for i, (a, b) in enumerate(X.tolist())))
    code = (
        "import sys\n"
        "from emseg.cli.main import main\n"
        f"sys.argv = ['emseg', 'gmm', 'fit', {str(path)!r}, '-k', '2', '--labels', "
        f"{str(tmp_path / 'labels.csv')!r}, '--model', {str(tmp_path / 'm.json')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('numba', 'pyarrow', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
    assert "2 columns: 'a', 'b' (text columns left out: 'name')" in out.stderr
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == 151
