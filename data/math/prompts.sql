-- Builds data/math/prompts.parquet: 200 arithmetic questions with checkable answers, for the
-- simulator's maths mode (`prs sim --math`) and `verify()`. Question i is the simulator's
-- `math_question(i)` (crates/prs-sim/src/math.rs), with the same arithmetic: i % 3 picks the
-- operator, modular steps the operands. Regenerate with:
--   cargo run -- sql -f data/math/prompts.sql
COPY (
  SELECT
    id,
    'Question ' || CAST(id AS VARCHAR) || ': What is ' || CAST(a AS VARCHAR) || ' ' || op || ' '
      || CAST(b AS VARCHAR) || '?' AS prompt,
    CAST(CASE op WHEN '+' THEN a + b WHEN '-' THEN a - b ELSE a * b END AS VARCHAR) AS reference
  FROM (
    SELECT
      id,
      op,
      CASE WHEN op = '*' THEN 2 + ((id % 98) * 37 + 11) % 98
           ELSE 10 + ((id % 890) * 37 + 11) % 890 END AS a,
      CASE WHEN op = '*' THEN 2 + ((id % 48) * 53 + 29) % 48
           ELSE 10 + ((id % 490) * 53 + 29) % 490 END AS b
    FROM (
      SELECT CAST(value AS BIGINT) AS id,
             CASE value % 3 WHEN 0 THEN '+' WHEN 1 THEN '-' ELSE '*' END AS op
      FROM generate_series(1, 200)
    )
  )
  ORDER BY id
) TO 'data/math/prompts.parquet' STORED AS PARQUET;
