-- DPO pairs you can train on without cleaning them afterwards, in both of TRL's formats:
--   * no pair whose chosen and rejected texts are the same (after trimming and collapsing
--     whitespace): a copy teaches nothing and DPO's loss on it is pure noise. unique=true
--     samples copies again at the source, so the budget buys n different answers; the filter
--     drops the copies left when the extra samples ran out;
--   * no truncated chosen answer (cut at max_tokens): best_excludes_truncated keeps it from
--     being the best, and the filter drops prompts where every answer was cut;
--   * the reward margin kept as a column, and pairs under MIN_MARGIN dropped: a small margin is
--     mostly reward-model noise, so such pairs flip as often as they teach.
-- The prompt is what the policy saw when it sampled: the question with the user's preference
-- (prs.preference_in_prompt = true, the default), so the trained model learns to follow stated
-- preferences. Train on the bare question only if the model will never see preferences, and
-- then know that the answers were shaped by a preference the pair does not show.
--   cargo run -- sql --sim -f queries/dpo_pairs_filtered.sql

CREATE TABLE candidates AS
SELECT * FROM prs_sample('data/prompts.parquet', 16, 'best_excludes_truncated=true, unique=true');

-- A prompt is its id, text and preference: prompts without an id (a null in the input's id
-- column) are told apart by their text and preference, never merged into one group.
CREATE TABLE ranked AS
SELECT prompt_id,
       CASE WHEN preference IS NULL OR trim(preference) = '' THEN prompt
            ELSE prompt || chr(10) || chr(10) || preference END AS prompt,
       response, reward, finish_reason,
       regexp_replace(trim(response), '\s+', ' ', 'g') AS normalized,
       row_number() OVER (PARTITION BY prompt_id, candidates.prompt, candidates.preference
                          ORDER BY is_best DESC, reward DESC, sample_index) AS best_rank,
       row_number() OVER (PARTITION BY prompt_id, candidates.prompt, candidates.preference
                          ORDER BY reward ASC, sample_index) AS worst_rank
FROM candidates
WHERE reward IS NOT NULL AND error IS NULL;

-- MIN_MARGIN: 0.5 of the simulator's reward scale; set it from your reward model's spread
CREATE TABLE pairs AS
SELECT c.prompt_id,
       c.prompt,
       c.response                 AS chosen,
       r.response                 AS rejected,
       c.reward                   AS chosen_reward,
       r.reward                   AS rejected_reward,
       c.reward - r.reward        AS reward_margin
FROM ranked c
JOIN ranked r ON (c.prompt_id IS NOT DISTINCT FROM r.prompt_id)
              AND (c.prompt IS NOT DISTINCT FROM r.prompt)
              AND c.best_rank = 1 AND r.worst_rank = 1
WHERE c.reward - r.reward >= 0.5
  AND c.normalized <> r.normalized
  AND c.finish_reason IS DISTINCT FROM 'length';

-- standard format: prompt, chosen and rejected as strings
COPY (SELECT * FROM pairs ORDER BY prompt_id)
TO 'out/dpo_pairs_filtered.parquet' STORED AS PARQUET;

-- conversational format: TRL applies the policy's chat template itself
COPY (
  SELECT prompt_id,
         make_array(named_struct('role', 'user', 'content', prompt))         AS prompt,
         make_array(named_struct('role', 'assistant', 'content', chosen))    AS chosen,
         make_array(named_struct('role', 'assistant', 'content', rejected))  AS rejected,
         reward_margin
  FROM pairs ORDER BY prompt_id
) TO 'out/dpo_pairs_conversational.parquet' STORED AS PARQUET;

SELECT count(*) AS pairs, round(min(reward_margin), 4) AS min_margin,
       round(avg(reward_margin), 4) AS mean_margin
FROM 'out/dpo_pairs_filtered.parquet';
