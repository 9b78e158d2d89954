#!/usr/bin/env bash
# GPU check (issue 4): the prs CLI against a real continuous-batching OpenAI-compatible server
# (`transformers serve --continuous-batching` with a random-weight Llama, from ../shared/gpu/),
# next to a plain 128-way concurrent client on the same server. Never part of CI.
#
# Prepare on the dev machine (repo root), then run this script on the GPU machine:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/whl; cp ../shared/gpu/*.py .gpu/
#   (download the serving wheels into .gpu/whl as ../shared/gpu/README.md says)
#   cargo build --release --bin prs && cp target/release/prs .gpu/
#   bash benches/gpu_check.sh           # with .gpu carried to the GPU machine
#
# The reward side is the project's own simulator (instant), so the figures are the policy's.
# Knobs: COPIES (copies of the 24 sample prompts), N (candidates per prompt), IN_FLIGHT
# (policy sequences in flight, the same as the plain client's concurrency), MAX_TOKENS.
set -uo pipefail
OUT=${OUT:-/tmp/prs-gpu}
PRS=${PRS:-.gpu/prs}
GPU_DIR=${GPU_DIR:-.gpu}
COPIES=${COPIES:-3}
N=${N:-4}
IN_FLIGHT=${IN_FLIGHT:-128}
MAX_TOKENS=${MAX_TOKENS:-128}
MODEL=${MODEL:-/tmp/model}
mkdir -p "$OUT"
METHODS=${METHODS:-random prs}
# several values compare client-side windows (each run is one prs sql job)
IN_FLIGHTS=${IN_FLIGHTS:-$IN_FLIGHT}

if [ -d "$GPU_DIR/whl" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$GPU_DIR"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
python3 "$GPU_DIR"/serve_random_model.py || { tail -40 /tmp/serve.log; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

util_log="$OUT/gpu_util.csv"
(while sleep 1; do
  nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader
done >>"$util_log" 2>/dev/null) &
util_pid=$!
mark() { echo "# $1 $(date +%s)" >>"$util_log"; }

echo "== plain client: ${IN_FLIGHT} requests at once (warm-up at 32 first), max_tokens ${MAX_TOKENS}"
mark baseline
python3 "$GPU_DIR"/load_sweep.py http://127.0.0.1:8000 "$MODEL" "32,${IN_FLIGHT},${IN_FLIGHT}" "$MAX_TOKENS" |
  tee "$OUT/baseline.jsonl"

"$PRS" sim --port 8001 >"$OUT/sim.log" 2>&1 &
sim_pid=$!
export PRS_POLICY_URL=http://127.0.0.1:8000/v1 PRS_POLICY_MODEL="$MODEL" \
  PRS_REWARD_URL=http://127.0.0.1:8001 PRS_REWARD_MODEL=prs-sim-reward \
  PRS_MAX_TOKENS="$MAX_TOKENS" \
  PRS_MAX_CHOICES_PER_REQUEST=1 PRS_TOP_K=-1
# transformers serve ignores `n`: one choice per request, all of a layer's requests at once

echo "== what the server lists and how it answers one request"
models=$(curl -s http://127.0.0.1:8000/v1/models)
echo "${models:0:400}"
if ! grep -q "\"$MODEL\"" <<<"$models"; then
  echo "(the server does not list $MODEL: preflight off)"
  export PRS_PREFLIGHT=false
fi
curl -s -w '\nHTTP %{http_code}\n' http://127.0.0.1:8000/v1/chat/completions \
  -H 'content-type: application/json' \
  -d '{"model":"'"$MODEL"'","messages":[{"role":"user","content":"hi"}],"n":1,"seed":7,
       "temperature":0.8,"top_p":1,"presence_penalty":1.2,"max_tokens":8}' | cut -c1-400

table="CREATE TABLE p AS SELECT t.id * 1000 + g.value AS id, t.prompt, t.preference
       FROM 'data/prompts.parquet' t CROSS JOIN generate_series(1, ${COPIES}) g"
for method in $METHODS; do
  for inflight in $IN_FLIGHTS; do
    run="${method}-${inflight}"
    echo "== prs: ${method}_sample, n=${N}, $((24 * COPIES)) prompts, ${inflight} sequences in flight"
    mark "$run"
    PRS_MAX_IN_FLIGHT="$inflight" "$PRS" sql --quiet --summary-json "$OUT/$run.json" \
      "$table; SELECT count(*) AS candidates, count(error) AS errors, avg(reward) AS mean_reward,
              avg(length(response)) AS mean_chars FROM ${method}_sample('p', ${N})" 2>&1 |
      tee "$OUT/$run.log"
  done
done
mark end
kill "$util_pid" "$sim_pid" 2>/dev/null

python3 - "$OUT" <<'EOF'
import json, sys, os
out = sys.argv[1]
base = [json.loads(l) for l in open(os.path.join(out, "baseline.jsonl")) if l.strip()]
best = max((b for b in base[1:]), key=lambda b: b["tok_per_s"])
print(f"plain client, {best['concurrency']} at once: {best['tok_per_s']} completion tok/s, "
      f"{best['ok'] / best['secs']:.2f} responses/s")
# GPU utilisation per phase, from the 1 s samples
phases, cur, samples = {}, None, []
for line in open(os.path.join(out, "gpu_util.csv")):
    if line.startswith("#"):
        cur = line.split()[1]
        continue
    try:
        phases.setdefault(cur, []).append(float(line.split(",")[1].split()[0]))
    except (IndexError, ValueError):
        pass
for name in sorted(f[:-5] for f in os.listdir(out) if f.endswith(".json")):
    s = json.load(open(os.path.join(out, f"{name}.json")))
    wall = s["wall_secs"]
    util = phases.get(name) or [0]
    method, inflight = name.rsplit("-", 1)
    print(f"prs {method}, {inflight} in flight: exit {s['exit_code']}, {s['candidates']} candidates "
          f"({s['failed_candidates']} failed), {s['policy_requests']} policy requests, "
          f"{s['completion_tokens']} completion tokens in {wall:.1f} s: "
          f"{s['candidates'] / wall:.2f} candidates/s, {s['completion_tokens'] / wall:.0f} tok/s "
          f"({s['completion_tokens'] / wall / best['tok_per_s']:.2f}x the plain client), "
          f"GPU busy {sum(util) / len(util):.0f}% on average"
          + (f"; error: {s['error']}" if s.get("error") else ""))
EOF
