-- Quickstart on a Ballista cluster (see docs/operations.md, "Running on a cluster"):
--   prs sql --cluster df://127.0.0.1:50050 --policy-url ... --reward-url ... -f queries/cluster_quickstart.sql
-- Tables created in the client's session (CREATE TABLE ... AS, VALUES) cannot travel to the
-- cluster, so the candidates are written to storage every executor reaches, then read back.

COPY (SELECT * FROM prs_sample('data/prompts.parquet', 8))
TO 'out/cluster_candidates/' STORED AS PARQUET;

CREATE EXTERNAL TABLE candidates STORED AS PARQUET LOCATION 'out/cluster_candidates/';

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
