-- A daily refresh job: sample only the prompts that are new since the last run, rebuild the SFT
-- and DPO sets from all candidates, and replace the outputs all or nothing.
--   cargo run -- sql --sim --summary-json out/daily/summary.json -f queries/daily_refresh.sql
--
-- The prompt table is a directory that grows: drop each day's new prompts into data/ as another
-- Parquet file (same columns). The checkpoint keeps every finished prompt, keyed by the call's
-- settings and the prompt, so a re-run serves yesterday's prompts from it and sends requests
-- for the new ones only. Change a sampling setting (n, temperature, templates, models) and every
-- prompt is sampled again, into a checkpoint of its own.

SET prs.checkpoint_dir = 'out/checkpoint';

CREATE TABLE candidates AS
SELECT * FROM prs_sample('data/', 8);

-- SFT: the best candidate per prompt
COPY (
  SELECT prompt_id, prompt, response, reward
  FROM candidates
  WHERE is_best AND error IS NULL
  ORDER BY prompt_id
) TO 'out/daily/sft.parquet' STORED AS PARQUET;

-- DPO: best and worst candidate per prompt, when their rewards differ. A prompt is its id, text
-- and preference: prompts without an id (a null in the id column) are told apart by their text
-- and preference, never merged into one group.
COPY (
  SELECT b.prompt, b.response AS chosen, w.response AS rejected,
         b.reward AS chosen_reward, w.reward AS rejected_reward, b.prompt_id
  FROM (SELECT *, row_number() OVER (PARTITION BY prompt_id, prompt, preference
                                     ORDER BY reward DESC, sample_index) AS r
        FROM candidates WHERE reward IS NOT NULL AND error IS NULL) b
  JOIN (SELECT *, row_number() OVER (PARTITION BY prompt_id, prompt, preference
                                     ORDER BY reward ASC, sample_index) AS r
        FROM candidates WHERE reward IS NOT NULL AND error IS NULL) w
    ON (b.prompt_id IS NOT DISTINCT FROM w.prompt_id)
   AND (b.prompt IS NOT DISTINCT FROM w.prompt)
   AND (b.preference IS NOT DISTINCT FROM w.preference)
   AND b.r = 1 AND w.r = 1
  WHERE b.reward > w.reward
  ORDER BY b.prompt_id
) TO 'out/daily/dpo.parquet' STORED AS PARQUET;

SELECT count(DISTINCT prompt_id) AS prompts, count(*) AS candidates,
       count(*) FILTER (WHERE is_best) AS sft_rows
FROM candidates;
