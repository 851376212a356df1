-- castinspect on PostgreSQL (12 or later): the inspections table partitioned by month, and two
-- functions for keeping it so. Run once, stations stopped, on a log castinspect has created:
--
--     psql "$CASTINSPECT_DB" -v ON_ERROR_STOP=1 -f scripts/postgres/partition-by-month.sql
--
-- then monthly (cron, systemd timer or pg_cron):
--
--     psql "$CASTINSPECT_DB" -c "SELECT castinspect_add_months(3)"              -- months ahead
--     psql "$CASTINSPECT_DB" -c "SELECT castinspect_drop_months_before('2025-12')"  -- retention
--
-- Dropping a month is a DROP TABLE, not a DELETE over millions of rows (castinspect log prune,
-- which works on any log): no bloat, no vacuum. The counters behind /v1/stats (hours, totals,
-- final decisions) keep every month's counts after its rows are gone. Export what must be kept
-- first (castinspect log export --until ...).
--
-- What changes: a partitioned table's unique keys must hold the partition column, so the
-- primary key is (seq, time) and id / request_key are unique per month. castinspect makes ids as
-- random UUIDs and checks id and request_key across the whole table before each insert, so
-- nothing it does depends on the wider constraint.

BEGIN;

ALTER TABLE inspections RENAME TO inspections_flat;
ALTER TABLE inspections_flat RENAME CONSTRAINT inspections_pkey TO inspections_flat_pkey;
ALTER TABLE inspections_flat RENAME CONSTRAINT inspections_id_key TO inspections_flat_id_key;
ALTER INDEX inspections_time RENAME TO inspections_flat_time;
ALTER INDEX inspections_decision RENAME TO inspections_flat_decision;
ALTER INDEX inspections_request_key RENAME TO inspections_flat_request_key;
ALTER INDEX inspections_model RENAME TO inspections_flat_model;
ALTER INDEX inspections_awaiting RENAME TO inspections_flat_awaiting;
ALTER INDEX inspections_image RENAME TO inspections_flat_image;

-- time is castinspect's ISO-8601 UTC text ('2026-12-02T01:03:18.123+00:00'): months are ranges
-- of text, 'YYYY-MM' <= time < the next 'YYYY-MM'.
CREATE TABLE inspections (LIKE inspections_flat INCLUDING DEFAULTS) PARTITION BY RANGE (time);
ALTER SEQUENCE inspections_seq_seq OWNED BY inspections.seq;
ALTER TABLE inspections ADD PRIMARY KEY (seq, time);
CREATE UNIQUE INDEX inspections_id ON inspections (id, time);  -- also serves lookups by id
CREATE UNIQUE INDEX inspections_request_key ON inspections (request_key, time);
CREATE INDEX inspections_time ON inspections (time);
CREATE INDEX inspections_decision ON inspections (decision, seq);
CREATE INDEX inspections_model ON inspections (model, seq);
CREATE INDEX inspections_awaiting ON inspections (awaiting, seq);
CREATE INDEX inspections_image ON inspections (image_sha256);
-- A row outside every month (a clock far off) lands here instead of failing its station.
CREATE TABLE inspections_other PARTITION OF inspections DEFAULT;

CREATE FUNCTION castinspect_add_month(month date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := 'inspections_' || to_char(month, 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF inspections FOR VALUES FROM (%L) TO (%L)', name,
                       to_char(month, 'YYYY-MM'), to_char(month + interval '1 month', 'YYYY-MM'));
    END IF;
END $$;

-- This month and the next ``ahead`` ones.
CREATE FUNCTION castinspect_add_months(ahead integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 0..ahead LOOP
        PERFORM castinspect_add_month((date_trunc('month', now()) + i * interval '1 month')::date);
    END LOOP;
END $$;

-- Every month that ends on or before ``cutoff`` ('YYYY-MM'): its inspections and their people's
-- dispositions, minute counters, and stored photos no remaining inspection refers to. Each month's
-- counts go to ``retired`` first (a listing's total is then the rows kept; the stats keep every
-- count). A month with parts still awaiting a person is refused unless ``force``.
CREATE FUNCTION castinspect_drop_months_before(cutoff text, force boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    waiting bigint;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'inspections'::regclass AND c.relname ~ '^inspections_[0-9]{4}_[0-9]{2}$'
          AND to_char(to_date(substr(c.relname, 13), 'YYYY_MM') + interval '1 month', 'YYYY-MM') <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT count(*) FROM %I WHERE awaiting IS NOT NULL', part.relname) INTO waiting;
        IF waiting > 0 AND NOT force THEN
            RAISE EXCEPTION '%: % parts still await a person (settle them, or pass force => true)',
                part.relname, waiting;
        END IF;
        EXECUTE format('INSERT INTO retired (model, decision, label, n) '
                       'SELECT model, coalesce(decision, ''''), coalesce(label, ''''), count(*) FROM %I '
                       'GROUP BY 1, 2, 3 ON CONFLICT (model, decision, label) DO UPDATE SET n = retired.n + excluded.n',
                       part.relname);
        EXECUTE format('DELETE FROM dispositions WHERE inspection_id IN (SELECT id FROM %I)', part.relname);
        EXECUTE format('ALTER TABLE inspections DETACH PARTITION %I', part.relname);
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM inspection_minutes WHERE minute < cutoff;
    DELETE FROM final_minutes WHERE minute < cutoff;
    DELETE FROM images im WHERE im.first_seen < cutoff
        AND NOT EXISTS (SELECT 1 FROM inspections WHERE image_sha256 = im.sha256);
    RETURN dropped;
END $$;

-- A partition for every month the log already holds, and three ahead; then the rows.
SELECT castinspect_add_month(month::date)
FROM generate_series(date_trunc('month', coalesce((SELECT min(time)::timestamptz FROM inspections_flat), now())),
                     date_trunc('month', now()), interval '1 month') AS month;
SELECT castinspect_add_months(3);
INSERT INTO inspections SELECT * FROM inspections_flat;
DROP TABLE inspections_flat;

COMMIT;
