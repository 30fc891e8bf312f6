"""emseg gmm / emseg hmm: tables in, JSON models and CSV results out."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from emseg.cli.main import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def table(tmp_path):
    """Two well separated blobs in columns a, b; an id column of 5 sequences; 39 holes."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(6, 1, (200, 2))])
    X[::13, 1] = np.nan
    lines = ["id,a,b,name"]
    for i, (a, b) in enumerate(X):
        lines.append(f"{i // 100},{float(a)!r},{'' if np.isnan(b) else repr(float(b))},x{i}")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, X


def read_csv(path):
    rows = path.read_text().splitlines()
    return rows[0].split(","), [r.split(",") for r in rows[1:]]


def test_gmm_fit_writes_model_and_labels(table, tmp_path):
    path, X = table
    result = run("gmm", "fit", path, "-k", 2, "--columns", "a,b",
                 "--model", tmp_path / "m.json", "--labels", tmp_path / "l.csv")
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "m.json").read_text())
    assert model["columns"] == ["a", "b"] and model["mixture"]["n_components"] == 2
    header, rows = read_csv(tmp_path / "l.csv")
    assert header == ["row", "label", "p0", "p1"] and len(rows) == 500
    labels = np.array([int(r[1]) for r in rows])
    assert (labels[:300] == 0).all() and (labels[300:] == 1).all()
    assert "read" in result.output and "500 rows" in result.output


def test_gmm_predict_and_impute_with_a_saved_model(table, tmp_path):
    path, X = table
    assert run("gmm", "fit", path, "-k", 2, "--columns", "a,b",
               "--model", tmp_path / "m.json").exit_code == 0
    result = run("gmm", "predict", tmp_path / "m.json", path, "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert len(read_csv(tmp_path / "p.csv")[1]) == 500
    result = run("gmm", "impute", path, "--model", tmp_path / "m.json", "-o", tmp_path / "f.csv")
    assert result.exit_code == 0, result.output
    before, after = path.read_text().splitlines(), (tmp_path / "f.csv").read_text().splitlines()
    changed = [i for i, (u, v) in enumerate(zip(before, after)) if u != v]
    assert len(changed) == 39  # only the rows with a hole
    filled = np.array([float(after[i].split(",")[2]) for i in changed])
    truth_blob = np.array([0.0 if i - 1 < 300 else 6.0 for i in changed])
    assert np.abs(filled - truth_blob).max() < 1.0  # each hole filled from its own blob
    assert all(after[i].split(",")[3] == before[i].split(",")[3] for i in changed)


def test_gmm_select_names_the_best(table, tmp_path):
    # the complete rows (imputed cells lie on a line, which a tight fit models as a
    # degenerate extra component)
    path, _ = table
    lines = path.read_text().splitlines()
    complete = [line for line in lines if ",," not in line]
    (tmp_path / "f.csv").write_text("\n".join(complete) + "\n")
    result = run("gmm", "select", tmp_path / "f.csv", "--columns", "a,b", "--k-max", 4)
    assert result.exit_code == 0, result.output
    assert "best by BIC: K=2" in result.output


def test_hmm_fit_and_decode(tmp_path):
    from emseg.hmm import GaussianHMM

    truth = GaussianHMM(2, covariance_type="diag")
    truth.startprob_ = np.array([0.5, 0.5])
    truth.transmat_ = np.array([[0.95, 0.05], [0.1, 0.9]])
    truth.means_ = np.array([[0.0], [5.0]])
    truth.covars_ = np.array([[1.0], [1.0]])
    rows = ["seq,value"]
    states = []
    for s in range(4):
        X, z = _sample(truth, 150, seed=s)
        rows += [f"s{s},{float(x)!r}" for x in X[:, 0]]
        states.append(z)
    path = tmp_path / "seq.csv"
    path.write_text("\n".join(rows) + "\n")
    result = run("hmm", "fit", path, "-k", 2, "--sequence-col", "seq",
                 "--model", tmp_path / "h.json")
    assert result.exit_code == 0, result.output
    result = run("hmm", "decode", tmp_path / "h.json", path, "-o", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    header, out = read_csv(tmp_path / "s.csv")
    assert header[:4] == ["row", "sequence", "state", "posterior"]
    decoded = np.array([int(r[2]) for r in out])
    assert (decoded == np.concatenate(states)).mean() > 0.97


def test_categorical_hmm_from_the_cli(tmp_path):
    rng = np.random.default_rng(3)
    symbols, state = [], 0
    for _ in range(600):
        state = state if rng.random() < 0.9 else 1 - state
        symbols.append(rng.choice(["sun", "cloud"] if state == 0 else ["rain", "cloud"],
                                  p=[0.8, 0.2]))
    path = tmp_path / "weather.csv"
    path.write_text("day,weather\n" + "".join(f"{i},{s}\n" for i, s in enumerate(symbols)))
    result = run("hmm", "fit", path, "-k", 2, "--categorical", "weather",
                 "--model", tmp_path / "w.json")
    assert result.exit_code == 0, result.output
    result = run("hmm", "decode", tmp_path / "w.json", path, "-o", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert len(read_csv(tmp_path / "s.csv")[1]) == 600


def _sample(model, n, seed):
    rng = np.random.default_rng(seed)
    z = np.empty(n, int)
    z[0] = rng.choice(2, p=model.startprob_)
    for t in range(1, n):
        z[t] = rng.choice(2, p=model.transmat_[z[t - 1]])
    # covars_ reads back as (K, D, D) matrices, as hmmlearn's
    X = model.means_[z] + rng.normal(size=(n, 1)) * np.sqrt(model.covars_[z, :, 0])
    return X, z


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("a,b\n1,x\n2,y\n", ["gmm", "fit", "{t}", "-k", "2", "--columns", "a,b"], "not numeric"),
        ("a,b\n1,2\n3\n", ["gmm", "fit", "{t}", "-k", "2"], "line 3"),
        ("", ["gmm", "fit", "{t}", "-k", "2"], "empty"),
        ("a,b\n1,\n2,\n3,\n", ["gmm", "fit", "{t}", "-k", "2", "--columns", "a,b"], "'b'"),
        ("a\n1\n2\n", ["gmm", "fit", "{t}", "-k", "5"], "n_components"),
        ("a\n1\n2\n3\n", ["hmm", "fit", "{t}", "-k", "2", "--sequence-col", "nope"], "nope"),
    ],
)
def test_bad_tables_get_one_line_and_exit_1(tmp_path, content, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = run(*[a.format(t=path) for a in args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert message in lines[0]


def test_model_for_other_columns_refused(table, tmp_path):
    path, _ = table
    assert run("gmm", "fit", path, "-k", 2, "--columns", "a,b",
               "--model", tmp_path / "m.json").exit_code == 0
    other = tmp_path / "other.csv"
    other.write_text("a,c\n1,2\n3,4\n")
    result = run("gmm", "predict", tmp_path / "m.json", other, "-o", tmp_path / "p.csv")
    assert result.exit_code == 1 and "'b'" in result.output
    (tmp_path / "bad.json").write_text('{"kind": "emseg.tabular.gmm", "columns": ["a"]}')
    result = run("gmm", "predict", tmp_path / "bad.json", path, "-o", tmp_path / "q.csv")
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_bad_arguments_exit_2(table):
    path, _ = table
    assert run("gmm", "fit", path, "-k", 0).exit_code == 2
    assert run("gmm", "fit", path, "-k", "abc").exit_code == 2
    assert run("hmm", "decode").exit_code == 2


@pytest.mark.parametrize(
    "source, target, message",
    [
        ("x.npy", "out.csv", "is a .npy array .* give the output a .npy name"),
        ("x.npy", "out.tsv", "give the output a .npy name"),
        ("t.csv", "out.npy", "is a text table .* give the output a .csv or .tsv name"),
    ],
)
def test_gmm_impute_output_format_follows_its_extension(table, tmp_path, source, target, message):
    # issue 17: 'gmm impute x.npy -o out.csv' wrote .npy bytes into out.csv
    path, X = table
    if source == "x.npy":
        path = tmp_path / "x.npy"
        np.save(path, X)
    result = run("gmm", "impute", path, "-k", 2, "-o", tmp_path / target)
    assert result.exit_code == 1, result.output
    assert message.split(" .* ")[-1] in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / target).exists()
    from emseg import EmsegError
    from emseg.io.tables import read_table, write_imputed

    t = read_table(path)
    with pytest.raises(EmsegError, match=message):
        write_imputed(tmp_path / target, t, np.nan_to_num(t.X))


def test_gmm_impute_npy_to_npy(table, tmp_path):
    _, X = table
    np.save(tmp_path / "x.npy", X)
    result = run("gmm", "impute", tmp_path / "x.npy", "-k", 2, "-o", tmp_path / "out.NPY")
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "out.NPY")
    assert out.shape == X.shape and np.isfinite(out).all()


# --------------------------------------------------------------------------- columns used


def _sequence_table(tmp_path, with_time=True, n=200):
    rng = np.random.default_rng(2)
    z = (np.arange(n) // 25) % 2
    x = rng.normal(size=n) + 5 * z
    y = rng.normal(size=n) - 3 * z
    head = "t,x,y,label" if with_time else "x,y,label"
    rows = [(f"{i * 0.5!r}," if with_time else "") + f"{float(a)!r},{float(b)!r},c{i % 3}"
            for i, (a, b) in enumerate(zip(x, y))]
    path = tmp_path / "seq.csv"
    path.write_text(head + "\n" + "\n".join(rows) + "\n")
    return path


def test_every_command_prints_the_columns_it_used(table, tmp_path):
    path, _ = table
    result = run("gmm", "fit", path, "-k", 2, "--model", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    assert "3 columns: 'id', 'a', 'b' (text columns left out: 'name')" in result.output
    result = run("gmm", "predict", tmp_path / "m.json", path, "-o", tmp_path / "p.csv")
    assert "3 columns: 'id', 'a', 'b' (the model's)" in result.output
    result = run("gmm", "impute", path, "-k", 2, "--columns", "a,b", "-o", tmp_path / "f.csv")
    assert "2 columns: 'a', 'b'" in result.output
    lines = path.read_text().splitlines()
    (tmp_path / "c.csv").write_text("\n".join(x for x in lines if ",," not in x) + "\n")
    result = run("gmm", "select", tmp_path / "c.csv", "--columns", "a,b", "--k-max", 2)
    assert "2 columns: 'a', 'b'" in result.output
    assert "columns" not in run("gmm", "fit", path, "-k", 2, "-q").output


def test_hmm_fit_refuses_an_index_like_column_unless_named(tmp_path):
    path = _sequence_table(tmp_path)
    result = run("hmm", "fit", path, "-k", 2)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert ("column 't' of" in lines[0] and "increases on every row" in lines[0]
            and "--columns x,y" in lines[0])
    result = run("hmm", "fit", path, "-k", 2, "--columns", "t,x,y", "--model", tmp_path / "h.json")
    assert result.exit_code == 0, result.output
    assert "3 columns: 't', 'x', 'y'" in result.output and "warning" not in result.output
    result = run("hmm", "decode", tmp_path / "h.json", path, "-o", tmp_path / "s.csv")
    assert "3 columns: 't', 'x', 'y' (the model's)" in result.output


def test_hmm_fit_without_columns_warns_which_it_used(tmp_path):
    path = _sequence_table(tmp_path, with_time=False)
    result = run("hmm", "fit", path, "-k", 2)
    assert result.exit_code == 0, result.output
    assert ("warning: no --columns given: fitting every numeric column of" in result.output
            and "'x', 'y'; text columns left out: 'label'" in result.output)
    from emseg.workflows.tables import hmm_fit

    with pytest.warns(UserWarning, match="fitting every numeric column"):
        hmm_fit(path, 2)


def test_hmm_index_check_is_per_sequence(tmp_path):
    """A time that starts again in each sequence still increases on every row of
    each: refused; a column that only increases across the whole table is not one."""
    from emseg import EmsegError
    from emseg.workflows.tables import hmm_fit

    rng = np.random.default_rng(0)
    rows = [f"s{i // 50},{i % 50},{float(rng.normal())!r}" for i in range(200)]
    path = tmp_path / "t.csv"
    path.write_text("seq,time,v\n" + "\n".join(rows) + "\n")
    with pytest.raises(EmsegError, match="column 'time' .* increases on every row"):
        hmm_fit(path, 2, sequence_col="seq")
    s = hmm_fit(path, 2, sequence_col="seq", columns=["v"])
    assert s["columns"] == ["v"]

