-- oversyncd: two indexes of the change log that repeat another one (issue #11).
-- scl_seq_idx has the key of the primary key (server_id), and scl_triplet_idx (user_id,
-- schema_name, table_name, pk_uuid) is a prefix of scl_user_pk_seq_idx: every query that could
-- use either uses the other as well, while every change written maintains both. The reference
-- server's newest version drops them too; SPEC §1 requires neither. An older reference server
-- started on this database creates them again (CREATE INDEX IF NOT EXISTS), which does no harm.
DROP INDEX IF EXISTS sync.scl_seq_idx;
DROP INDEX IF EXISTS sync.scl_triplet_idx;
