-- Snapshot labels (inherited by the sandboxes created from a snapshot, key
-- by key under their own) and who created a snapshot (the API key's id).
ALTER TABLE snapshots ADD COLUMN labels TEXT;
ALTER TABLE snapshots ADD COLUMN created_by TEXT;
