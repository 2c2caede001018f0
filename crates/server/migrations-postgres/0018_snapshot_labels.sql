-- PostgreSQL twin of migrations/0018_snapshot_labels.sql.
ALTER TABLE snapshots ADD COLUMN labels TEXT COLLATE "C";
ALTER TABLE snapshots ADD COLUMN created_by TEXT COLLATE "C";
