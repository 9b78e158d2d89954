-- Builds data/prompts.parquet, the project's own sample prompt table (24 prompts, each with a
-- per-row preference). Regenerate with:
--   cargo run -- sql -f data/prompts.sql
COPY (
  SELECT CAST(column1 AS BIGINT) AS id, column2 AS prompt, column3 AS preference, column4 AS topic
  FROM (VALUES
    (1,  'Explain why the sky looks blue during the day and red at sunset.', 'I like short explanations a curious teenager can follow, with one everyday analogy.', 'science'),
    (2,  'Write a haiku about a train leaving a snowy station.', 'I prefer vivid sensory images and no clichés about silence.', 'writing'),
    (3,  'How do I reverse a linked list in place? Show code in Python.', 'I want working code first, then a two-sentence explanation of the pointer moves.', 'code'),
    (4,  'What are the main differences between a Roth IRA and a traditional IRA?', 'I prefer a compact comparison table followed by one practical rule of thumb.', 'finance'),
    (5,  'Suggest a three-day itinerary for a first visit to Lisbon.', 'I enjoy food markets and walking, and I dislike crowded tourist traps.', 'travel'),
    (6,  'Summarise the causes of the First World War.', 'I prefer a neutral tone, a short timeline, and the distinction between long-term and immediate causes.', 'history'),
    (7,  'How can I make my sourdough bread less dense?', 'I want concrete, numbered troubleshooting steps with the likely cause of each problem.', 'cooking'),
    (8,  'Explain what a p-value is without using jargon.', 'I prefer a simple example with coins or dice and a warning about common misreadings.', 'science'),
    (9,  'Draft a polite email asking my manager for a day off next Friday.', 'I prefer a brief, warm but professional tone and a clear subject line.', 'writing'),
    (10, 'What is the difference between TCP and UDP?', 'I want a precise technical answer with one example use case for each.', 'code'),
    (11, 'Give me a beginner strength-training plan I can do at home.', 'I have no equipment and 30 minutes, three times a week; safety cues matter to me.', 'health'),
    (12, 'Why do cats purr?', 'I like answers that say what is known and what is still uncertain.', 'science'),
    (13, 'Write a SQL query that finds the second highest salary in an employees table.', 'I prefer standard SQL and a note on how ties are handled.', 'code'),
    (14, 'How should I prepare for a job interview for a data analyst role?', 'I want a checklist I can work through in one week, with example questions.', 'career'),
    (15, 'Describe the water cycle for a ten-year-old.', 'I prefer playful language and a short story format.', 'science'),
    (16, 'What are good strategies to reduce procrastination?', 'I prefer evidence-based tips, each with a one-line way to try it today.', 'health'),
    (17, 'Translate "Where is the nearest pharmacy?" into Spanish, French and German.', 'I want each translation with a simple pronunciation guide.', 'language'),
    (18, 'Explain how vaccines train the immune system.', 'I prefer accurate biology at a high-school level and no fear-mongering.', 'health'),
    (19, 'Write a short product description for a reusable water bottle.', 'I like punchy marketing copy under 60 words that mentions sustainability.', 'writing'),
    (20, 'What is the time complexity of quicksort and why?', 'I want average and worst cases explained with the intuition behind each.', 'code'),
    (21, 'How do I politely decline a wedding invitation?', 'I prefer a sincere tone and a ready-to-send example message.', 'writing'),
    (22, 'Compare electric cars and hybrid cars for a long daily commute.', 'I care most about running costs and charging logistics; keep it balanced.', 'transport'),
    (23, 'What is a black hole?', 'I enjoy detailed, in-depth answers that mention recent observations.', 'science'),
    (24, 'Plan a vegetarian dinner party menu for six people.', 'I prefer seasonal autumn dishes that can be prepared ahead of time.', 'cooking')
  )
) TO 'data/prompts.parquet' STORED AS PARQUET;
