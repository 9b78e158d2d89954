-- DPO pairs in TRL's format (prompt, chosen, rejected): the best and the worst candidate per
-- prompt, kept only when their rewards differ.
--   cargo run -- sql --sim -f queries/dpo_pairs.sql

CREATE TABLE candidates AS
SELECT * FROM prs_sample('data/prompts.parquet', 16);

-- A prompt is its id, text and preference: prompts without an id (a null in the input's id
-- column) are told apart by their text and preference, never merged into one group.
CREATE TABLE ranked AS
SELECT prompt_id, prompt, preference, response, reward,
       row_number() OVER (PARTITION BY prompt_id, prompt, preference ORDER BY reward DESC, sample_index) AS best_rank,
       row_number() OVER (PARTITION BY prompt_id, prompt, preference ORDER BY reward ASC, sample_index)  AS worst_rank
FROM candidates
WHERE reward IS NOT NULL AND error IS NULL;

COPY (
  SELECT c.prompt          AS prompt,
         c.response        AS chosen,
         r.response        AS rejected,
         c.reward          AS chosen_reward,
         r.reward          AS rejected_reward,
         c.prompt_id       AS prompt_id
  FROM ranked c
  JOIN ranked r ON (c.prompt_id IS NOT DISTINCT FROM r.prompt_id)
                AND (c.prompt IS NOT DISTINCT FROM r.prompt)
                AND (c.preference IS NOT DISTINCT FROM r.preference)
                AND c.best_rank = 1 AND r.worst_rank = 1
  WHERE c.reward > r.reward
  ORDER BY c.prompt_id
) TO 'out/dpo_pairs.parquet' STORED AS PARQUET;

SELECT count(*) AS pairs, round(avg(chosen_reward - rejected_reward), 4) AS mean_margin
FROM 'out/dpo_pairs.parquet';
