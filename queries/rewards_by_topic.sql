-- Join sampled rewards back to training metadata on the prompt id (here the `topic` column of
-- the prompt table stands in for your metadata table).
--   cargo run -- sql --sim -f queries/rewards_by_topic.sql

CREATE EXTERNAL TABLE metadata STORED AS PARQUET LOCATION 'data/prompts.parquet';

CREATE TABLE candidates AS
SELECT * FROM prs_sample('metadata', 8);

SELECT m.topic,
       count(DISTINCT c.prompt_id)                      AS prompts,
       round(avg(c.reward) FILTER (WHERE c.is_best), 4) AS mean_best_reward,
       round(avg(c.reward), 4)                          AS mean_reward
FROM candidates c
JOIN metadata m ON m.id = c.prompt_id
GROUP BY m.topic
ORDER BY mean_best_reward DESC;
