-- Verified DPO pairs: chosen is a right answer (checked against the question's reference; the
-- best by reward among them), rejected a wrong one. Adaptive sampling stops a question at its
-- first right-and-wrong pair, or early when its answers all agree, so the budget goes to
-- questions that can give a pair. The reward model still scores every candidate.
--   cargo run -- sql --sim -f queries/dpo_pairs_verified.sql

SET prs.verifier = 'math';
SET prs.adaptive = 'pairs';

CREATE TABLE candidates AS
SELECT * FROM random_sample('data/math/prompts.parquet', 8);

CREATE TABLE ranked AS
SELECT prompt_id, prompt, response, reward, verified,
       row_number() OVER (PARTITION BY prompt_id, verified ORDER BY reward DESC, sample_index) AS best_rank,
       row_number() OVER (PARTITION BY prompt_id, verified ORDER BY reward ASC, sample_index)  AS worst_rank
FROM candidates
WHERE error IS NULL AND verified IS NOT NULL AND reward IS NOT NULL;

-- TRL's preference columns (prompt, chosen, rejected)
COPY (
  SELECT c.prompt   AS prompt,
         c.response AS chosen,
         r.response AS rejected,
         c.reward   AS chosen_reward,
         r.reward   AS rejected_reward,
         c.prompt_id
  FROM ranked c
  JOIN ranked r ON c.prompt_id = r.prompt_id
  WHERE c.verified AND c.best_rank = 1
    AND NOT r.verified AND r.worst_rank = 1
  ORDER BY c.prompt_id
) TO 'out/dpo_pairs_verified.parquet' STORED AS PARQUET;

SELECT count(*) AS pairs,
       (SELECT count(*) FROM candidates) AS candidates_sampled,
       (SELECT count(DISTINCT prompt_id) FROM candidates) AS questions
FROM 'out/dpo_pairs_verified.parquet';
