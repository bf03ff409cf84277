-- oversyncd: who owns a business row (SPEC §8.5: users never touch each other's rows).
-- The sidecar is keyed by user, but a materialized table's business rows are shared by all
-- users, keyed by the primary key alone. Each key of a materialized table therefore belongs to
-- the first user that created it: the upload claims it (INSERT ... ON CONFLICT DO NOTHING on the
-- primary key below, so two users racing for one key are serialized by the unique index), and a
-- change of any other user to that key is refused (invalid / pk_taken). Tables kept only in the
-- sidecar (materializer none) are not claimed: there every user has a namespace of its own.
CREATE TABLE IF NOT EXISTS sync.row_owner (
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    pk_uuid     uuid NOT NULL,
    user_id     text NOT NULL,
    PRIMARY KEY (schema_name, table_name, pk_uuid)
);

-- The materialized tables whose existing rows have been adopted into sync.row_owner (at a
-- worker's connect, from sync.sync_row_meta: the earliest writer of a key owns it). A table
-- that goes back to materializer none leaves this list, and is adopted again when it returns.
CREATE TABLE IF NOT EXISTS sync.row_owner_tables (
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    adopted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name)
);
