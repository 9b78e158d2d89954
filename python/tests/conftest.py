"""Fixtures: one simulator for the session, a fresh context per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from datafusion import SessionContext

import datafusion_prs

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = str(ROOT / "data" / "prompts.parquet")


@pytest.fixture(scope="session")
def sim():
    with datafusion_prs.simulator() as sim:
        yield sim


@pytest.fixture()
def ctx(sim) -> SessionContext:
    ctx = SessionContext().enable_url_table()
    datafusion_prs.register(ctx, env=False, **sim.settings())
    return ctx
