-- Quickstart: PRS with n = 8 (two layers of 4) over the sample prompts, written to Parquet.
--   cargo run -- sql --sim -f queries/quickstart.sql        (built-in simulator)
--   prs sql -f queries/quickstart.sql                       (endpoints from PRS_* / --policy-url ...)

-- Sample once and keep the candidates: every later query reads this table, not the endpoints.
CREATE TABLE candidates AS
SELECT * FROM prs_sample('data/prompts.parquet', 8);

COPY candidates TO 'out/prs_candidates.parquet' STORED AS PARQUET;

-- One line per prompt: the best candidate, the layer it came from, and the best of layer 0.
SELECT prompt_id,
       max(reward) FILTER (WHERE is_best)          AS best_reward,
       max(layer) FILTER (WHERE is_best)           AS best_layer,
       max(reward) FILTER (WHERE layer = 0)        AS best_layer0_reward,
       count(*)                                    AS candidates,
       count(error)                                AS errors
FROM candidates
-- text and preference too: prompts without an id (a null id) stay apart
GROUP BY prompt_id, prompt, preference
ORDER BY prompt_id;

-- The picture of the run, one self-contained page: reward distributions, best of k, what the
-- revisions did, data checks, chosen vs rejected. Open out/report.html in a browser.
SELECT * FROM prs_report('out/prs_candidates.parquet', 'out/report.html');
