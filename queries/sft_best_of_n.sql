-- An SFT set: the best-of-N response per prompt (here from PRS, N = 16).
--   cargo run -- sql --sim -f queries/sft_best_of_n.sql
-- Sampling runs once (CREATE TABLE); the SFT set is derived from the stored candidates.

CREATE TABLE candidates AS
SELECT * FROM prs_sample('data/prompts.parquet', 16);

COPY (
  SELECT prompt_id, prompt, response, reward
  FROM candidates
  WHERE is_best AND error IS NULL
  ORDER BY prompt_id
) TO 'out/sft_best_of_n.parquet' STORED AS PARQUET;

SELECT count(*) AS sft_rows, round(avg(reward), 4) AS mean_reward
FROM 'out/sft_best_of_n.parquet';
