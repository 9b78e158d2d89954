-- Re-score existing (prompt, response) rows with the reward endpoint: here the SFT set written
-- by queries/sft_best_of_n.sql, scored again with the 3-argument form that adds a preference.
--   cargo run -- sql --sim -f queries/rescore.sql

CREATE TABLE sft AS
SELECT prompt, response, 'I prefer very short answers.' AS preference
FROM (SELECT * FROM prs_sample('data/prompts.parquet', 4) WHERE is_best);

SELECT substr(prompt, 1, 40)                AS prompt,
       reward(prompt, response)             AS reward_plain,
       reward(prompt, response, preference) AS reward_with_preference
FROM sft
ORDER BY prompt
LIMIT 5;
