"""``emseg gmm ...`` and ``emseg hmm ...``: mixtures and hidden Markov models on tables."""

import click

from . import options as opt
from .errors import translated


def _table_work(flags):
    """How a table command's work is run: library errors and bugs become one line and
    exit 1; warnings (no convergence...) are printed as one line each."""
    return translated(flags, bugs=True, warn=True,
                      out_of_memory="try fewer rows, columns or components")


def _columns_line(columns, skipped=()):
    """``2 columns: 'a', 'b' (text columns left out: 'name')``: the columns a command
    used, always said (unless --quiet)."""
    text = f"{len(columns)} column{'s' if len(columns) != 1 else ''}: " + (
        ", ".join(repr(c) for c in columns) or "none")
    if skipped:
        text += f" (text columns left out: {', '.join(repr(c) for c in skipped)})"
    return text


@click.group()
def gmm():
    """Gaussian mixtures on tables (CSV, TSV with a header row, or .npy).

    Empty cells, NA, NaN and null are missing values, fitted by EM on the observed
    columns. By default every numeric column is used (a column holding numbers and
    other text is an error); the columns used are always printed.
    """


@gmm.command("fit")
@opt.table
@click.option("-k", "--classes", type=click.IntRange(1), required=True, help="Components.")
@opt.covariance()
@opt.table_max_iter
@opt.table_model("Write the fitted model (JSON).")
@click.option("--labels", "labels_path", type=click.Path(),
              help="Write labels.csv: row, label, probability of each class.")
@opt.table_fit_options
@click.pass_obj
def gmm_fit(flags, table, classes, covariance, max_iter, model_path, labels_path, columns,
            seed, tol, n_init, overwrite):
    """Fit a K-component mixture to TABLE's columns."""
    from ..workflows.tables import gmm_fit as work

    with _table_work(flags):
        s = work(table, classes, columns=columns, covariance_type=covariance,
                 random_state=seed, max_iter=max_iter or "auto",
                 tol="auto" if tol is None else tol, n_init=n_init or "auto",
                 model_path=model_path, labels_path=labels_path, overwrite=overwrite)
    flags.say(f"{table}: {s['rows']} rows, {_columns_line(s['columns'], s['skipped'])}; "
              f"read in {s['read_seconds']:.2f} s, {s['missing']} missing cells")
    flags.say(f"K={s['k']}: {s['iterations']} iterations in {s['fit_seconds']:.2f} s, "
              f"converged {s['converged']}, log-likelihood per row {s['log_likelihood']:.6g}, "
              f"BIC {s['bic']:.6g}")
    if not flags.quiet and not model_path and not labels_path:
        gm = s["model"]
        for k in range(gm.n_components_):
            click.echo(f"component {k}: weight {gm.weights_[k]:.4f}, mean "
                       + " ".join(f"{v:.6g}" for v in gm.means_[k]))


@gmm.command("select")
@opt.table
@click.option("--k-max", type=click.IntRange(1), default=10, show_default=True)
@click.option("--covariance", "covariances", type=opt.COVARIANCES, multiple=True,
              help="Covariance types to try (repeatable; default all four).")
@opt.table_max_iter
@opt.table_fit_options
@click.pass_obj
def gmm_select(flags, table, k_max, covariances, max_iter, columns, seed, tol, n_init,
               overwrite):
    """Print BIC and AIC for K = 1..K-MAX and each covariance type; name the best."""
    from ..workflows.tables import gmm_select as work

    with _table_work(flags):
        rows, best, t = work(table, k_max, columns=columns,
                             covariance_types=covariances or None, random_state=seed,
                             max_iter=max_iter or "auto", tol="auto" if tol is None else tol,
                             n_init=n_init or "auto")
    flags.say(f"{table}: {t.n_rows} rows, {_columns_line(t.columns, t.skipped)}")
    click.echo(f"{'covariance':<10} {'K':>3} {'BIC':>16} {'AIC':>16} {'log-likelihood':>16}")
    for r in rows:
        click.echo(f"{r['covariance_type']:<10} {r['k']:>3} {r['bic']:>16.6g} "
                   f"{r['aic']:>16.6g} {r['log_likelihood']:>16.6g}")
    click.echo(f"best by BIC: K={best['k']}, covariance {best['covariance_type']}")


@gmm.command("predict")
@opt.model_file
@opt.table
@opt.table_output(default="labels.csv", show_default=True)
@opt.overwrite("Replace an existing output file.")
@opt.quiet
@opt.debug
@click.pass_obj
def gmm_predict(flags, model_file, table, output, overwrite):
    """Label TABLE's rows with a fitted model; write OUTPUT (row, label, probabilities)."""
    from ..workflows.tables import gmm_predict as work

    with _table_work(flags):
        s = work(model_file, table, output, overwrite=overwrite)
    flags.say(f"{table}: {s['rows']} rows, {_columns_line(s['columns'])} (the model's)")
    flags.say(f"{table}: {s['rows']} rows labelled into {output}; rows per class {s['counts']}")


@gmm.command("impute")
@opt.table
@opt.table_output(required=True, help="The filled table.")
@click.option("-k", "--classes", type=click.IntRange(1), default=None,
              help="Fit a mixture of K components here...")
@opt.table_model("...or use a fitted model.")
@opt.covariance()
@opt.table_max_iter
@opt.table_fit_options
@click.pass_obj
def gmm_impute(flags, table, output, classes, model_path, covariance, max_iter, columns, seed,
               tol, n_init, overwrite):
    """Fill TABLE's missing cells with their expected values under a mixture.

    Every other cell, column and character of the file is kept as it is.
    """
    from ..workflows.tables import gmm_impute as work

    with _table_work(flags):
        s = work(table, output, k=classes, model_path=model_path, columns=columns,
                 covariance_type=covariance, random_state=seed,
                 max_iter=max_iter or "auto", tol="auto" if tol is None else tol,
                 n_init=n_init or "auto", overwrite=overwrite)
    flags.say(f"{table}: {s['rows']} rows, {_columns_line(s['columns'], s['skipped'])}")
    flags.say(f"{table}: {s['filled']} missing cells filled (K={s['k']}) into {output}")


@click.group()
def hmm():
    """Hidden Markov models on tables of sequences (CSV, TSV or .npy)."""


@hmm.command("fit")
@opt.table
@click.option("-k", "--states", type=click.IntRange(1), required=True, help="Hidden states.")
@opt.sequence_col("Column of sequence ids (rows contiguous).")
@click.option("--categorical", default=None, help="Column of symbols: a categorical HMM.")
@opt.covariance()
@click.option("--n-iter", type=click.IntRange(1), default=100, show_default=True)
@opt.table_model("Write the fitted model (JSON).")
@click.option("--states-out", "states_path", type=click.Path(),
              help="Also write the Viterbi states of TABLE (CSV).")
@opt.table_fit_options
@click.pass_obj
def hmm_fit(flags, table, states, sequence_col, categorical, covariance, n_iter, model_path,
            states_path, columns, seed, tol, n_init, overwrite):
    """Fit a K-state HMM to TABLE by Baum-Welch.

    Name the columns to model with --columns; without it every numeric column is used
    (with a warning naming them), and a column that increases on every row (a row
    index, a time) is refused unless named.
    """
    from ..workflows.tables import hmm_fit as work

    with _table_work(flags):
        s = work(table, states, columns=columns, sequence_col=sequence_col,
                 categorical=categorical, covariance_type=covariance, random_state=seed,
                 n_iter=n_iter, tol=1e-4 if tol is None else tol, n_init=n_init or 1,
                 model_path=model_path, states_path=states_path, overwrite=overwrite)
    flags.say(f"{table}: {s['rows']} rows in {s['sequences']} sequence(s), "
              f"{_columns_line(s['columns'], s['skipped'])}; read in {s['read_seconds']:.2f} s")
    flags.say(f"K={s['k']}: {s['iterations']} iterations in {s['fit_seconds']:.2f} s, "
              f"converged {s['converged']}, log-likelihood {s['log_likelihood']:.8g}")


@hmm.command("decode")
@opt.model_file
@opt.table
@opt.table_output(default="states.csv", show_default=True)
@click.option("--algorithm", type=click.Choice(["viterbi", "map"]), default="viterbi",
              show_default=True)
@opt.sequence_col("Column of sequence ids (default: the one the model was fitted with).")
@opt.overwrite("Replace an existing output file.")
@opt.quiet
@opt.debug
@click.pass_obj
def hmm_decode(flags, model_file, table, output, algorithm, sequence_col, overwrite):
    """Decode TABLE's hidden states with a fitted model; write OUTPUT (state, posterior)."""
    from ..workflows.tables import hmm_decode as work

    with _table_work(flags):
        s = work(model_file, table, output, algorithm=algorithm, sequence_col=sequence_col,
                 overwrite=overwrite)
    flags.say(f"{table}: {s['rows']} rows, {_columns_line(s['columns'])} (the model's)")
    flags.say(f"{table}: {s['rows']} rows in {s['sequences']} sequence(s) decoded "
              f"({algorithm}, log-probability {s['log_probability']:.8g}) into {output}")
