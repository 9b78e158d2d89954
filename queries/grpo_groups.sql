-- GRPO groups from verified rewards: arithmetic questions with reference answers, a reward that
-- is the verdict (no reward model), adaptive sampling that stops early on questions whose
-- answers all agree, and each candidate's group-relative advantage. Only groups that hold both
-- outcomes (and all their candidates) are kept: the others teach GRPO nothing.
--   cargo run -- sql --sim -f queries/grpo_groups.sql

SET prs.reward_protocol = 'verify';   -- reward = 1.0 when the answer matches, else 0.0
SET prs.verifier = 'math';
SET prs.adaptive = 'groups';

CREATE TABLE candidates AS
SELECT * FROM random_sample('data/math/prompts.parquet', 8);

CREATE TABLE groups AS
SELECT prompt_id, prompt, response, reward, group_size,
       avg(reward) OVER g AS group_mean,
       stddev_pop(reward) OVER g AS group_std,
       count(*) OVER g AS scored
FROM candidates
WHERE error IS NULL
WINDOW g AS (PARTITION BY prompt_id);

-- TRL's prompt-completion columns, with the reward and the advantage beside them
COPY (
  SELECT prompt,
         response AS completion,
         reward,
         (reward - group_mean) / group_std AS advantage,
         prompt_id
  FROM groups
  WHERE group_std > 0 AND scored = group_size
  ORDER BY prompt_id, advantage DESC
) TO 'out/grpo_groups.parquet' STORED AS PARQUET;

SELECT count(DISTINCT prompt_id) AS informative_groups,
       count(*) AS completions,
       (SELECT count(*) FROM candidates) AS candidates_sampled,
       (SELECT count(DISTINCT prompt_id) FROM candidates) AS questions
FROM 'out/grpo_groups.parquet';
