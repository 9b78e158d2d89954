"""datafusion_prs from Python: the table functions in DataFusion's own SessionContext, through
the FFI, against the built-in simulator (no GPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest
from datafusion import SessionContext

import datafusion_prs
from conftest import PROMPTS, ROOT

# the CLI's output columns, in order
COLUMNS = [
    "prompt_id", "prompt", "preference", "method", "layer", "sample_index", "parent_index",
    "feedback", "response", "answer", "reward", "rewards", "is_best", "judge_wins",
    "judge_consistent", "duplicate_of", "finish_reason",
    "seed", "policy_model", "reward_model", "error", "reference", "verified", "group_size",
    "stopped",
]


def test_random_and_prs_sample_through_the_simulator(ctx):
    for function, method in [("random_sample", "random"), ("prs_sample", "prs")]:
        t = ctx.sql(f"SELECT * FROM {function}('{PROMPTS}', 4)").to_arrow_table()
        assert t.column_names == COLUMNS
        assert t.num_rows == 24 * 4
        rows = t.to_pylist()
        assert {r["method"] for r in rows} == {method}
        assert all(r["error"] is None and r["reward"] is not None for r in rows)
        best = [r["prompt_id"] for r in rows if r["is_best"]]
        assert sorted(best) == sorted({r["prompt_id"] for r in rows}), "one best per prompt"
        layers = {r["layer"] for r in rows}
        assert layers == ({0} if method == "random" else {0, 1})


def layers(ctx, options: str = "") -> set[int]:
    sql = f"SELECT DISTINCT layer FROM prs_sample('{PROMPTS}', 4, '{options}')"
    return set(ctx.sql(sql).to_pandas()["layer"])


def test_settings_by_keyword_and_by_options_string(sim):
    ctx = SessionContext()
    datafusion_prs.register(ctx, env=False, widths="2/1/1", feedback=False, **sim.settings())
    assert layers(ctx) == {0, 1, 2}
    # the options string overrides the keywords for one call
    assert layers(ctx, "widths=3/1") == {0, 1}
    feedback = ctx.sql(f"SELECT count(feedback) AS f FROM prs_sample('{PROMPTS}', 4)")
    assert feedback.to_pydict()["f"] == [0], "feedback=False: no feedback"
    # registering again replaces the settings
    datafusion_prs.register(ctx, env=False, **sim.settings())
    assert layers(ctx) == {0, 1}


def test_environment_variables_feed_the_settings_and_keywords_win(monkeypatch):
    monkeypatch.setenv("PRS_TEMPERATURE", "0.3")
    monkeypatch.setenv("PRS_WIDTHS", "2/2")
    s = datafusion_prs.settings(widths="3/1")
    assert (s["temperature"], s["widths"]) == ("0.3", "3/1")
    assert datafusion_prs.settings(env=False)["temperature"] == "0.8"
    # keys are never settings
    assert not any("key" in name for name in s)


def test_a_bad_setting_raises_with_the_cli_message(ctx):
    with pytest.raises(ValueError, match=r'unknown setting "temprature" .*valid settings: .*temperature'):
        datafusion_prs.register(SessionContext(), temprature=0.7)
    with pytest.raises(ValueError, match=r'invalid setting prs\.temperature = "hot"'):
        datafusion_prs.register(SessionContext(), temperature="hot")
    with pytest.raises(ValueError, match=r"expected one of row, fail"):
        datafusion_prs.settings(on_error="explode")
    # in the options string: at planning, with the same text
    with pytest.raises(Exception, match=r'unknown setting "temprature" \(in the options of prs_sample\)'):
        ctx.sql(f"SELECT * FROM prs_sample('{PROMPTS}', 4, 'temprature=0.7')").collect()
    with pytest.raises(Exception, match=r"no Parquet files found|file or directory not found"):
        ctx.sql("SELECT * FROM prs_sample('no/such.parquet', 4)").collect()


def test_an_unreachable_endpoint_is_an_exception_naming_it():
    ctx = SessionContext()
    datafusion_prs.register(
        ctx, env=False, policy_url="http://127.0.0.1:9/v1", reward_url="http://127.0.0.1:9",
        retry_attempts=1,
    )
    with pytest.raises(Exception, match=r"policy endpoint http://127\.0\.0\.1:9/v1.* could not be reached.*prs\.policy_url"):
        ctx.sql(f"SELECT * FROM random_sample('{PROMPTS}', 2)").collect()


def test_results_convert_to_arrow_pandas_polars_and_datasets(ctx):
    df = ctx.sql(f"SELECT prompt_id, response, reward FROM random_sample('{PROMPTS}', 2)")
    t = df.to_arrow_table()
    assert isinstance(t, pa.Table) and t.num_rows == 48
    pdf = df.to_pandas()
    assert len(pdf) == 48 and pdf["reward"].dtype == "float64"
    pl = pytest.importorskip("polars")
    plf = df.to_polars()
    assert isinstance(plf, pl.DataFrame) and plf.height == 48
    assert plf.schema["reward"] == pl.Float64 and plf.schema["response"] == pl.String
    assert plf["prompt_id"].n_unique() == 24
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset(t)
    assert len(ds) == 48 and isinstance(ds[0]["response"], str)


def test_the_dpo_query_of_the_cli_gives_trl_columns_as_strings(ctx, tmp_path, monkeypatch):
    # the query reads data/prompts.parquet and writes out/dpo_pairs.parquet, relative paths
    (tmp_path / "data").mkdir()
    shutil.copy(PROMPTS, tmp_path / "data" / "prompts.parquet")
    monkeypatch.chdir(tmp_path)
    script = (ROOT / "queries" / "dpo_pairs.sql").read_text()
    summary = datafusion_prs.sql(ctx, script).to_pydict()
    assert summary["pairs"][0] > 0 and summary["mean_margin"][0] > 0
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_parquet(str(tmp_path / "out" / "dpo_pairs.parquet"))
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    for column in ["prompt", "chosen", "rejected"]:
        assert ds.features[column].dtype in ("string", "large_string")
    assert all(row["chosen"] != row["rejected"] for row in ds)


def test_prs_score_rescores_candidates_as_sampling_scored_them(ctx, sim, tmp_path):
    # reward() cannot cross the FFI (no async scalar functions there): prs_score can
    out = tmp_path / "candidates.parquet"
    ctx.sql(f"COPY (SELECT * FROM prs_sample('{PROMPTS}', 2)) TO '{out}'").collect()
    sampled = ctx.sql(f"SELECT prompt_id, sample_index, reward FROM '{out}'").to_pandas()
    before = sim.requests()
    t = ctx.sql(f"SELECT * FROM prs_score('{out}')").to_arrow_table()
    cost = {k: sim.requests()[k] - before[k] for k in before}
    assert t.column_names[-1] == "reward" and t.column_names.count("reward") == 1
    assert set(t.column_names) == set(COLUMNS)
    scored = t.select(["prompt_id", "sample_index", "reward"]).to_pandas()
    both = sampled.merge(scored, on=["prompt_id", "sample_index"], suffixes=("_sampled", "_scored"))
    assert len(both) == 48
    assert (both["reward_sampled"] - both["reward_scored"]).abs().max() < 1e-9
    # the simulator takes conversations (reward_input=auto), one per request, as in sampling
    assert cost == {"policy": 0, "reward": 48}, cost
    # texts go in batches: 48 in 7 requests of at most 7
    before = sim.requests()
    n = ctx.sql(
        f"SELECT count(reward) AS n FROM prs_score('{out}', 'reward_input=text, reward_batch_size=7')"
    ).to_pydict()["n"][0]
    assert n == 48 and sim.requests()["reward"] - before["reward"] == 7


def test_prs_score_without_a_response_column_names_what_it_found(ctx):
    with pytest.raises(Exception, match=r"no response column: expected `response` \(or set prs\.response_column\); columns found: id \(Int64\), prompt"):
        ctx.sql(f"SELECT * FROM prs_score('{PROMPTS}')").collect()


def test_the_same_call_twice_in_one_query_is_sampled_once(ctx, sim):
    one = f"prs_sample('{PROMPTS}', 4, 'seed=11')"
    before = sim.requests()
    single = ctx.sql(f"SELECT count(*) AS n FROM {one}").to_pydict()["n"][0]
    after_one = sim.requests()
    joined = ctx.sql(
        f"SELECT count(*) AS n FROM {one} a JOIN {one} b "
        "ON a.prompt_id = b.prompt_id AND a.sample_index = b.sample_index "
        "AND a.response = b.response AND a.reward = b.reward"
    ).to_pydict()["n"][0]
    after_two = sim.requests()
    assert single == joined == 96
    cost = {k: after_one[k] - before[k] for k in before}
    cost_joined = {k: after_two[k] - after_one[k] for k in before}
    assert cost["policy"] > 0 and cost_joined == cost, (cost, cost_joined)


def test_statements_split_outside_strings_and_comments():
    script = "-- a ; comment\nSELECT 'a;b' AS x;\n\nSELECT 2;\n-- trailing\n"
    assert datafusion_prs.split_statements(script) == ["-- a ; comment\nSELECT 'a;b' AS x", "SELECT 2"]


def test_a_long_call_stops_on_ctrl_c_without_hanging(tmp_path):
    # a server that accepts connections and never answers: the call waits until interrupted
    child = textwrap.dedent(
        f"""
        import socket, sys, threading
        from datafusion import SessionContext
        import datafusion_prs
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        held = []
        threading.Thread(target=lambda: [held.append(server.accept()) for _ in iter(int, 1)], daemon=True).start()
        url = "http://127.0.0.1:%d" % server.getsockname()[1]
        ctx = SessionContext()
        datafusion_prs.register(ctx, env=False, policy_url=url + "/v1", reward_url=url,
                                policy_model="m", preflight=False, request_timeout_secs=600)
        print("started", flush=True)
        try:
            ctx.sql("SELECT * FROM random_sample('{PROMPTS}', 4)").collect()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(7)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(2.0)
        assert proc.poll() is None, "the call is still waiting"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert time.monotonic() - sent < 10
    finally:
        proc.kill()
    assert proc.returncode == 7, (out, err)
    assert "interrupted" in out


def test_no_progress_line_unless_asked(ctx, capfd):
    ctx.sql(f"SELECT count(*) FROM random_sample('{PROMPTS}', 2)").collect()
    captured = capfd.readouterr()
    assert "prs:" not in captured.err and "prompts/s" not in captured.err


def test_the_report_page_of_a_run(ctx, tmp_path):
    candidates = tmp_path / "c.parquet"
    ctx.sql(
        f"COPY (SELECT * FROM prs_sample('{PROMPTS}', 4) UNION ALL "
        f"SELECT * FROM random_sample('{PROMPTS}', 4)) TO '{candidates}' STORED AS PARQUET"
    ).collect()
    written = datafusion_prs.report(candidates, tmp_path / "page" / "report.html")
    assert written == str(tmp_path / "page" / "report.html")
    html = (tmp_path / "page" / "report.html").read_text()
    for section in ["Run", "Reward distributions", "Best of k", "Data checks", "Chosen vs rejected"]:
        assert f"<h2>{section}</h2>" in html
    assert html.count("<figure") == 5 and "<script" not in html
    assert "prs layer 1" in html and ">random<" in html

    bad = tmp_path / "bad.parquet"
    ctx.sql(f"COPY (SELECT 1 AS x) TO '{bad}' STORED AS PARQUET").collect()
    with pytest.raises(ValueError, match=r"lacks the column\(s\) prompt_id"):
        datafusion_prs.report(bad, tmp_path / "bad.html")
    assert not (tmp_path / "bad.html").exists()


class _RetryAfterServer:
    """A hostile server on 127.0.0.1: every request gets 429 with ``Retry-After: <value>``."""

    def __init__(self, retry_after: str):
        import http.server
        import threading

        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append(f"{self.command} {self.path}")
                body = b'{"error": {"message": "slow down"}}'
                self.send_response(429)
                self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


_RETRY_AFTER_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import pyarrow as pa, pyarrow.parquet as pq
    from datafusion import SessionContext
    import datafusion_prs
    url, prompts = sys.argv[1], sys.argv[2]
    pq.write_table(pa.table({"prompt": ["Say hi."]}), prompts)
    ctx = SessionContext()
    datafusion_prs.register(
        ctx, env=False, policy_url=url + "/v1", reward_url=url, policy_model="m",
        preflight=False, retry_attempts=5, retry_initial_delay_ms=1, retry_max_delay_ms=10,
        retry_deadline_secs=2, request_timeout_secs=20,
    )

    def run(options):
        started = time.monotonic()
        try:
            sql = f"SELECT error FROM random_sample('{prompts}', 2, '{options}')"
            out = {"rows": ctx.sql(sql).to_pydict()["error"]}
        except Exception as e:
            out = {"raised": type(e).__name__, "message": str(e)}
        out["seconds"] = time.monotonic() - started
        return out

    print(json.dumps([run(""), run("on_error=fail")]), flush=True)
    """
)


@pytest.mark.parametrize("retry_after", ["1e300", "99999999999999999999", "inf"])
def test_a_huge_retry_after_is_an_error_and_never_aborts_the_interpreter(tmp_path, retry_after):
    # A Rust panic crossing the FFI would abort Python: the calls run in a child interpreter,
    # so that an abort is this test failing (a signal for a return code), not pytest dying.
    server = _RetryAfterServer(retry_after)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RETRY_AFTER_CHILD, server.url, str(tmp_path / "one.parquet")],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        server.close()
    assert time.monotonic() - started < 30
    # a negative return code is a signal: SIGABRT is a panic that crossed the FFI
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    rows, failed = json.loads(proc.stdout.strip().splitlines()[-1])
    endpoint = f"policy endpoint {server.url}/v1/chat/completions answered HTTP 429: slow down"
    # on_error=row (the default): one error row per candidate, naming the endpoint and the 429
    assert rows.get("rows") == [f"policy: {endpoint}"] * 2, rows
    # on_error=fail: an exception with the same message
    assert "raised" in failed and endpoint in failed["message"], failed
    # the server's wait was honoured up to retry_deadline_secs = 2, then the call gave up:
    # one request and one retry per call
    for outcome in (rows, failed):
        assert 1.5 <= outcome["seconds"] < 15, outcome
    posts = [r for r in server.requests if r.startswith("POST")]
    assert posts == ["POST /v1/chat/completions"] * 4, server.requests
    # the prompt window reads the server's load once per call (GET /metrics, answered 429
    # here), never retries it, and asks no more once it had no gauges
    assert server.requests.count("GET /metrics") <= 2, server.requests


def test_verified_rewards_and_adaptive_groups_from_python(tmp_path):
    questions = str(ROOT / "data" / "math" / "prompts.parquet")
    out = tmp_path / "answers.parquet"
    with datafusion_prs.simulator(math=True) as sim:
        ctx = SessionContext().enable_url_table()
        settings = sim.settings()
        settings.update(verifier="math", reward_protocol="verify", adaptive="groups")
        datafusion_prs.register(ctx, env=False, **settings)
        rows = ctx.sql(
            f"SELECT prompt_id, reward, verified, group_size, stopped, reference "
            f"FROM random_sample('{questions}', 8)"
        ).to_arrow_table().to_pylist()
        # prs_score checks a table of answers (the FFI carries no verify()); it needs a model
        ctx.sql(
            f"COPY (SELECT prompt, '\\boxed{{' || reference || '}}' AS response, reference "
            f"FROM '{questions}') TO '{out}'"
        ).collect()
        scored = ctx.sql(
            f"SELECT verified FROM prs_score('{out}', 'reward_protocol=vllm-pooling')"
        ).to_arrow_table().to_pylist()
    assert {r["reward"] for r in rows} <= {0.0, 1.0}
    assert all(r["reward"] == (1.0 if r["verified"] else 0.0) for r in rows)
    assert {r["stopped"] for r in rows} == {"uniform", "full"}
    assert len({r["prompt_id"] for r in rows}) == 200 and len(rows) < 200 * 8
    assert all(r["reference"] for r in rows)
    assert len(scored) == 200 and all(r["verified"] for r in scored)
