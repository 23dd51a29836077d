-- Analyst views. Each reads its facts with FINAL, so a row loaded twice counts once.

-- Who did something in a course, and when: quiz answers, flashcard reviews, analytics events.
CREATE OR REPLACE VIEW v_student_activity AS
SELECT course_id, user_id, toDate(attempted_at) AS day FROM fact_quiz_attempts FINAL
UNION ALL
SELECT course_id, user_id, toDate(reviewed_at) AS day FROM fact_reviews FINAL
UNION ALL
SELECT assumeNotNull(course_id) AS course_id, assumeNotNull(user_id) AS user_id, toDate(occurred_at) AS day
FROM fact_api_events FINAL WHERE course_id IS NOT NULL AND user_id IS NOT NULL;

CREATE OR REPLACE VIEW v_daily_active_students AS
SELECT course_id, day, uniqExact(user_id) AS active_students
FROM v_student_activity GROUP BY course_id, day ORDER BY course_id, day;

CREATE OR REPLACE VIEW v_weekly_active_students AS
SELECT course_id, toMonday(day) AS week, uniqExact(user_id) AS active_students
FROM v_student_activity GROUP BY course_id, week ORDER BY course_id, week;

-- Upload -> searchable and upload -> indexed, in seconds, per day of upload (succeeded ingestions).
CREATE OR REPLACE VIEW v_ingestion_latency AS
SELECT
    toDate(queued_at) AS day,
    count() AS documents,
    quantileExactInclusive(0.50)(searchable_s) AS searchable_p50,
    quantileExactInclusive(0.95)(searchable_s) AS searchable_p95,
    quantileExactInclusive(0.99)(searchable_s) AS searchable_p99,
    quantileExactInclusive(0.50)(indexed_s) AS indexed_p50,
    quantileExactInclusive(0.95)(indexed_s) AS indexed_p95,
    quantileExactInclusive(0.99)(indexed_s) AS indexed_p99
FROM (
    SELECT queued_at,
        dateDiff('millisecond', queued_at, assumeNotNull(searchable_at)) / 1000 AS searchable_s,
        dateDiff('millisecond', queued_at, assumeNotNull(indexed_at)) / 1000 AS indexed_s
    FROM fact_ingestion_jobs FINAL
    WHERE kind = 'ingest_document' AND outcome = 'succeeded' AND searchable_at IS NOT NULL
)
GROUP BY day ORDER BY day;

CREATE OR REPLACE VIEW v_pages_per_hour AS
SELECT toStartOfHour(assumeNotNull(searchable_at)) AS hour, sum(coalesce(pages, 0)) AS pages, count() AS documents
FROM fact_ingestion_jobs FINAL
WHERE kind = 'ingest_document' AND outcome = 'succeeded' AND searchable_at IS NOT NULL
GROUP BY hour ORDER BY hour;

CREATE OR REPLACE VIEW v_failure_reasons AS
SELECT coalesce(failure_reason, '(no reason recorded)') AS reason, count() AS jobs, max(finished_at) AS last_seen
FROM fact_ingestion_jobs FINAL
WHERE outcome = 'failed'
GROUP BY reason ORDER BY jobs DESC, reason;

-- One row per attempt (its items share the attempt's score).
CREATE OR REPLACE VIEW v_quiz_attempt_scores AS
SELECT course_id, quiz_id, attempt_id, any(user_id) AS user_id, min(attempted_at) AS attempted_at,
    any(attempt_score) AS score, any(attempt_max_score) AS max_score
FROM fact_quiz_attempts FINAL
GROUP BY course_id, quiz_id, attempt_id;

-- Attempts per course in score deciles: bucket 0 = 0-9 %, ..., 9 = 90-100 %.
CREATE OR REPLACE VIEW v_quiz_score_distribution AS
SELECT course_id,
    least(toUInt8(floor((10 * score) / max_score)), 9) AS bucket,
    concat(toString(bucket * 10), '-', toString(bucket * 10 + if(bucket = 9, 10, 9)), ' %') AS score_range,
    count() AS attempts
FROM v_quiz_attempt_scores
WHERE max_score > 0
GROUP BY course_id, bucket ORDER BY course_id, bucket;

-- Item analysis: difficulty (share correct), discrimination (point-biserial correlation of the
-- item's 0/1 with the attempt's score share), and flags: every answer correct, nobody correct,
-- strong students (attempt score >= 75 %) correct less than half the time, negative discrimination.
CREATE OR REPLACE VIEW v_item_analysis AS
SELECT
    a.course_id AS course_id,
    a.quiz_id AS quiz_id,
    a.item_id AS item_id,
    any(i.question) AS question,
    count() AS answers,
    avg(a.correct) AS difficulty,
    corr(toFloat64(a.correct), a.attempt_score / a.attempt_max_score) AS discrimination,
    countIf(a.attempt_score / a.attempt_max_score >= 0.75) AS strong_answers,
    avgIf(a.correct, a.attempt_score / a.attempt_max_score >= 0.75) AS strong_correct,
    arrayFilter(flag -> flag != '', [
        if(difficulty = 1, 'everyone_correct', ''),
        if(difficulty = 0, 'nobody_correct', ''),
        if(strong_answers > 0 AND strong_correct < 0.5, 'strong_students_miss', ''),
        if(isFinite(discrimination) AND discrimination < 0, 'negative_discrimination', '')
    ]) AS flags
FROM fact_quiz_attempts AS a FINAL
LEFT JOIN (SELECT item_id, question FROM dim_quiz_items FINAL) AS i ON i.item_id = a.item_id
WHERE a.attempt_max_score > 0
GROUP BY a.course_id, a.quiz_id, a.item_id
ORDER BY a.course_id, a.quiz_id, a.item_id;

-- Pick rate of every option of every answered item (the key and its distractors).
CREATE OR REPLACE VIEW v_item_options AS
SELECT o.course_id AS course_id, o.quiz_id AS quiz_id, o.item_id AS item_id, o.option_id AS option_id,
    o.option_text AS option_text, o.option_id = o.correct_option_id AS is_key,
    p.picks AS picks, t.answers AS answers, p.picks / t.answers AS pick_rate
FROM (
    SELECT course_id, quiz_id, item_id, correct_option_id,
        JSONExtractString(option, 'option_id') AS option_id, JSONExtractString(option, 'text') AS option_text
    FROM dim_quiz_items FINAL ARRAY JOIN JSONExtractArrayRaw(options) AS option
) AS o
INNER JOIN (SELECT item_id, count() AS answers FROM fact_quiz_attempts FINAL GROUP BY item_id) AS t
    ON t.item_id = o.item_id
LEFT JOIN (
    SELECT item_id, assumeNotNull(chosen_option_id) AS option_id, count() AS picks
    FROM fact_quiz_attempts FINAL WHERE chosen_option_id IS NOT NULL GROUP BY item_id, option_id
) AS p ON p.item_id = o.item_id AND p.option_id = o.option_id
ORDER BY course_id, quiz_id, item_id, option_id;

-- Retention: of the reviews of cards seen before, the share not rated Again (rating > 1).
CREATE OR REPLACE VIEW v_flashcard_retention AS
SELECT course_id,
    count() AS reviews,
    uniqExact(user_id) AS students,
    uniqExact(card_id) AS cards,
    countIf(due_before IS NOT NULL) AS repeat_reviews,
    countIf(due_before IS NOT NULL AND rating > 1) AS recalled,
    if(repeat_reviews = 0, NULL, recalled / repeat_reviews) AS retention
FROM fact_reviews FINAL
GROUP BY course_id ORDER BY course_id;

-- Searches that found nothing good: no result, or a top fused (RRF, k = 60) score below 0.025,
-- i.e. no chunk ranked near the top of both the vector and the full-text list.
CREATE OR REPLACE VIEW v_low_score_searches AS
SELECT occurred_at, course_id, user_id, JSONExtractString(properties, 'query') AS query,
    JSONExtractString(properties, 'mode') AS mode, result_count, top_score
FROM fact_api_events FINAL
WHERE name = 'search.performed' AND (coalesce(result_count, 0) = 0 OR coalesce(top_score, 0) < 0.025)
ORDER BY occurred_at DESC;
