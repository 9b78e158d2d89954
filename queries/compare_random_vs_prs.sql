-- Random best-of-N against PRS on the same prompts with the same N: mean best reward.
--   cargo run -- sql --sim -f queries/compare_random_vs_prs.sql
-- (On the simulator the rewards are synthetic; the numbers only mean something on real models.)

CREATE TABLE samples AS
SELECT * FROM random_sample('data/prompts.parquet', 16)
UNION ALL
SELECT * FROM prs_sample('data/prompts.parquet', 16);

COPY samples TO 'out/random_vs_prs.parquet' STORED AS PARQUET;

SELECT method,
       count(DISTINCT prompt_id)                         AS prompts,
       round(avg(reward) FILTER (WHERE is_best), 4)      AS mean_best_reward,
       round(avg(reward), 4)                             AS mean_reward
FROM samples
GROUP BY method
ORDER BY method;
