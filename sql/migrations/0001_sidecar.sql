-- The sidecar exactly as the reference server (go-oversync) lays it out, so that a database it
-- created is recognised object for object: every statement creates only what is missing and
-- leaves existing objects untouched. Whatever oversyncd needs beyond this layout belongs in later
-- migrations.

-- CREATE SCHEMA IF NOT EXISTS demands CREATE on the database even when the schema is there; a
-- role that merely owns an existing sidecar must still be able to run this file.
DO $$
BEGIN
    IF to_regnamespace('sync') IS NULL THEN
        CREATE SCHEMA sync;
    END IF;
END
$$;

-- Per-row version and lifecycle, per user.
CREATE TABLE IF NOT EXISTS sync.sync_row_meta (
    user_id        TEXT        NOT NULL,
    schema_name    TEXT        NOT NULL,
    table_name     TEXT        NOT NULL,
    pk_uuid        UUID        NOT NULL,
    server_version BIGINT      NOT NULL DEFAULT 0,
    deleted        BOOLEAN     NOT NULL DEFAULT FALSE,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, schema_name, table_name, pk_uuid)
);

-- Latest after-image of every live row.
CREATE TABLE IF NOT EXISTS sync.sync_state (
    user_id     TEXT  NOT NULL,
    schema_name TEXT  NOT NULL,
    table_name  TEXT  NOT NULL,
    pk_uuid     UUID  NOT NULL,
    payload     JSONB NOT NULL,
    PRIMARY KEY (user_id, schema_name, table_name, pk_uuid)
);

-- Append-only distribution stream and idempotency ledger.
CREATE TABLE IF NOT EXISTS sync.server_change_log (
    server_id        BIGSERIAL PRIMARY KEY,
    user_id          TEXT        NOT NULL,
    schema_name      TEXT        NOT NULL,
    table_name       TEXT        NOT NULL,
    op               TEXT        NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    pk_uuid          UUID        NOT NULL,
    payload          JSONB,
    source_id        TEXT        NOT NULL,
    source_change_id BIGINT      NOT NULL,
    server_version   BIGINT      NOT NULL DEFAULT 0,
    ts               TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, source_id, source_change_id),
    CONSTRAINT server_change_payload_by_op_chk
        CHECK ((op = 'DELETE' AND payload IS NULL) OR (op IN ('INSERT', 'UPDATE') AND payload IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS scl_seq_idx ON sync.server_change_log (server_id);
CREATE INDEX IF NOT EXISTS scl_user_seq_idx ON sync.server_change_log (user_id, server_id);
CREATE INDEX IF NOT EXISTS scl_user_schema_seq_idx ON sync.server_change_log (user_id, schema_name, server_id);
CREATE INDEX IF NOT EXISTS scl_triplet_idx ON sync.server_change_log (user_id, schema_name, table_name, pk_uuid);
CREATE INDEX IF NOT EXISTS scl_user_pk_seq_idx ON sync.server_change_log (user_id, schema_name, table_name, pk_uuid, server_id);
CREATE INDEX IF NOT EXISTS scl_user_delete_seq_idx ON sync.server_change_log (user_id, server_id) WHERE op = 'DELETE';

-- Projections into business tables that failed, for diagnosis and retry.
CREATE TABLE IF NOT EXISTS sync.materialize_failures (
    id                BIGSERIAL PRIMARY KEY,
    user_id           TEXT        NOT NULL,
    schema_name       TEXT        NOT NULL,
    table_name        TEXT        NOT NULL,
    pk_uuid           UUID        NOT NULL,
    attempted_version BIGINT      NOT NULL,
    op                TEXT        NOT NULL,
    payload           JSONB,
    error             TEXT        NOT NULL,
    first_seen        TIMESTAMPTZ NOT NULL DEFAULT now(),
    retry_count       INT         NOT NULL DEFAULT 0,
    UNIQUE (user_id, schema_name, table_name, pk_uuid, attempted_version)
);

CREATE INDEX IF NOT EXISTS mf_user_table_idx ON sync.materialize_failures (user_id, schema_name, table_name);
