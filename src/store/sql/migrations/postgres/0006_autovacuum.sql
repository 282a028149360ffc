-- Version 6 (PostgreSQL): the job tables churn. Every job's row is updated a few times (marked
-- published, started, finished) and deleted after its retention; aggregate deltas are inserted
-- and deleted every second. PostgreSQL's default vacuums a table once 20% of it is dead, and
-- analyzes it once 10% changed: on a store that holds a retention window of jobs that lets dead
-- rows pile up (the store grows instead of reusing their space) and leaves the planner with
-- stale statistics while a table grows from empty. Vacuum and analyze these after a small
-- fraction instead, as queue tables need (Oban, River and graphile-worker advise the same).

ALTER TABLE pj_jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

ALTER TABLE pj_events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

ALTER TABLE pj_agg_delta SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);

ALTER TABLE pj_dedup SET (autovacuum_vacuum_scale_factor = 0.02);
