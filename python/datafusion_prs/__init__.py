"""PRS and best-of-N sampling for LLM alignment data, as SQL table functions in DataFusion's
Python ``SessionContext``.

    from datafusion import SessionContext
    import datafusion_prs

    ctx = SessionContext()
    datafusion_prs.register(ctx, policy_url="http://gpu-1:8000/v1", reward_url="http://gpu-2:8001")
    t = ctx.sql("SELECT * FROM prs_sample('prompts.parquet', 16)").to_arrow_table()

Settings are the ``prs.*`` settings of the CLI and SQL (``prs settings`` lists them): defaults,
then ``PRS_*`` environment variables, then the keywords of :func:`register`; the third argument
of a call (``'temperature=0.7, widths=8/8'``) overrides them for that call. API keys come from
``PRS_POLICY_API_KEY`` / ``PRS_REWARD_API_KEY`` only.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from datafusion import SessionContext, udtf

from datafusion import DataFrame

from ._native import SampleFunction, Settings, Simulator, __version__, split_statements
from ._native import report as _report

__all__ = [
    "register",
    "report",
    "settings",
    "simulator",
    "sql",
    "split_statements",
    "Simulator",
    "FUNCTIONS",
    "__version__",
]

#: The table functions :func:`register` adds.
FUNCTIONS = ("random_sample", "prs_sample", "prs_score")


def _text(value: Any) -> str:
    """A keyword's value as the setting's text (``True`` -> ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "/".join(str(v) for v in value)
    return str(value)


def settings(*, env: bool = True, **values: Any) -> dict[str, str]:
    """Every ``prs.*`` setting as it would be after ``register(ctx, **values)``.

    Raises ``ValueError`` with the CLI's message for an unknown setting or a bad value.
    """
    return Settings([(k, _text(v)) for k, v in values.items()], env).to_dict()


def register(ctx: SessionContext, *, env: bool = True, **values: Any) -> None:
    """Register ``random_sample``, ``prs_sample`` and ``prs_score`` on ``ctx`` with these
    settings. ``prs_score('table.parquet')`` gives a table's rows with a ``reward`` for each
    (prompt, response): what ``reward(prompt, response)`` gives in the CLI's SQL, which
    DataFusion's Python package cannot run (its FFI carries no async scalar function).

    Any ``prs.*`` setting is a keyword (``temperature=0.7``, ``widths="8/4/4"``,
    ``feedback=False``); ``env=False`` ignores ``PRS_*`` environment variables. A setting that
    does not exist or has a bad value raises ``ValueError`` with the CLI's message. Calling it
    again replaces the functions with new settings.
    """
    fixed = Settings([(k, _text(v)) for k, v in values.items()], env)
    for name in FUNCTIONS:
        ctx.register_udtf(udtf(SampleFunction(name, fixed), name))


@contextmanager
def simulator(
    *,
    repeat_share: float = 0.0,
    think: bool = False,
    math: bool = False,
    hostile_share: float = 0.0,
) -> Iterator[Simulator]:
    """The built-in simulator on 127.0.0.1 (NOT a model: word salad and a toy reward).

        with datafusion_prs.simulator() as sim:
            datafusion_prs.register(ctx, **sim.settings())

    ``repeat_share`` makes that share of samples the prompt's one favourite answer (try
    ``unique=True``); ``think`` makes it write like a reasoning model (try
    ``answer_pattern="think"``); ``math`` answers questions like those of
    ``data/math/prompts.parquet`` right or wrong (try ``verifier="math"``), and
    ``hostile_share`` makes that share of its answers hard on a checker.
    """
    sim = Simulator(
        repeat_share=repeat_share, think=think, math=math, hostile_share=hostile_share
    )
    try:
        yield sim
    finally:
        sim.stop()


def sql(ctx: SessionContext, script: str) -> DataFrame:
    """Run a script of statements separated by ``;``, as ``prs sql -f`` does: every statement
    but the last is run to completion (``CREATE TABLE``, ``COPY ... TO``); the last one's
    DataFrame is returned, not yet run.

        df = datafusion_prs.sql(ctx, open("queries/dpo_pairs.sql").read())
    """
    statements = split_statements(script)
    if not statements:
        raise ValueError("no SQL statement in the script")
    for statement in statements[:-1]:
        ctx.sql(statement).collect()
    return ctx.sql(statements[-1])


def report(
    candidates: str | os.PathLike[str],
    output: str | os.PathLike[str] = "out/report.html",
    *,
    summary: str | os.PathLike[str] | None = None,
    pairs: str | os.PathLike[str] | None = None,
) -> str:
    """Write the page ``prs report`` writes for a Parquet table of candidates (reward
    distributions, best of k, what PRS's revisions did, data checks, chosen vs rejected: one
    self-contained HTML file) and return its path. In a notebook:
    ``IPython.display.IFrame(path, width=1000, height=800)``.

        ctx.sql("COPY (SELECT * FROM prs_sample('prompts.parquet', 8)) TO 'out/c.parquet'").collect()
        datafusion_prs.report("out/c.parquet")

    ``summary`` is a job summary of ``prs sql --summary-json``; ``pairs`` a Parquet file of DPO
    pairs to describe instead of best vs worst per prompt. A table without the needed columns
    raises ``ValueError`` naming them.
    """
    return _report(
        os.fspath(candidates),
        os.fspath(output),
        None if summary is None else os.fspath(summary),
        None if pairs is None else os.fspath(pairs),
    )
