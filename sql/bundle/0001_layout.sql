-- The sidecar of the bundle protocol (go-oversync 1f1118f, SPEC-v2 §5.1), layout
-- "server_postgres_sync_v1". src/bundle/schema.c runs this file once, inside the bootstrap
-- transaction, and only when schema sync holds no relation and no function; it then inserts the
-- marker row of sync.meta and the rows of sync.table_catalog itself.
--
-- Byte-compatibility: the go-oversync library adopts a database laid out by this file, and
-- oversyncd adopts one the library laid out. Every table, column (order, type, nullability,
-- default), constraint (name and expression tree), index, sequence and function signature below
-- is therefore the one the library creates; tests/compat/check-bundle-schema.sh compares the two
-- with pg_dump. Constraint names are spelled out here, also where they are PostgreSQL's default
-- names, so that they cannot drift. No COMMENT ON: it would show in that comparison.
--
-- Nothing here may use IF NOT EXISTS or OR REPLACE: the file only ever runs on an empty schema,
-- and an object that is already there means the bootstrap misjudged the schema.

-- CREATE SCHEMA IF NOT EXISTS demands CREATE on the database even when the schema exists (a role
-- that owns only an empty schema sync must be able to run this file).
DO $$
BEGIN
    IF to_regnamespace('sync') IS NULL THEN
        CREATE SCHEMA sync;
    END IF;
END
$$;

-- ------------------------------------------------------------------------------ markers

-- The layout marker: exactly one row (true, 'v1', 'server_postgres_sync_v1').
CREATE TABLE sync.meta (
    singleton_key  boolean NOT NULL,
    protocol_label text    NOT NULL DEFAULT 'v1',
    layout_name    text    NOT NULL,
    CONSTRAINT meta_pkey PRIMARY KEY (singleton_key),
    CONSTRAINT meta_singleton_key_check CHECK (singleton_key)
);

-- One row per registered table. table_id is the 1-based rank of "schema.table" in byte order;
-- sync_key_kind 1 = uuid (key_bytes: the 16 raw bytes), 2 = text (key_bytes: UTF-8).
CREATE TABLE sync.table_catalog (
    table_id        integer  NOT NULL,
    schema_name     text     NOT NULL,
    table_name      text     NOT NULL,
    sync_key_column text     NOT NULL,
    sync_key_kind   smallint NOT NULL,
    CONSTRAINT table_catalog_pkey PRIMARY KEY (table_id),
    CONSTRAINT table_catalog_schema_table_key UNIQUE (schema_name, table_name),
    CONSTRAINT table_catalog_sync_key_kind_chk CHECK (sync_key_kind IN (1, 2))
);

-- ------------------------------------------------------------------------- per user

-- A user (scope). next_bundle_seq - 1 is the newest committed bundle; bundles at or below
-- retained_bundle_floor have been pruned.
CREATE TABLE sync.user_state (
    user_pk               bigint GENERATED ALWAYS AS IDENTITY,
    user_id               text   NOT NULL,
    next_bundle_seq       bigint NOT NULL DEFAULT 1,
    retained_bundle_floor bigint NOT NULL DEFAULT 0,
    CONSTRAINT user_state_pkey PRIMARY KEY (user_pk),
    CONSTRAINT user_state_user_id_key UNIQUE (user_id),
    CONSTRAINT user_state_bundle_seq_chk CHECK (next_bundle_seq >= 1),
    CONSTRAINT user_state_retained_floor_chk
        CHECK (retained_bundle_floor >= 0 AND retained_bundle_floor <= next_bundle_seq - 1)
);

-- The scope's lifecycle: 0 uninitialized, 1 initializing (under a lease held by one source),
-- 2 initialized (by one source). Each state allows exactly its own fields.
CREATE TABLE sync.scope_state (
    user_pk                  bigint      NOT NULL,
    state_code               smallint    NOT NULL,
    initializer_source_id    text,
    initialization_id        uuid,
    lease_expires_at         timestamptz,
    initialized_at           timestamptz,
    initialized_by_source_id text,
    CONSTRAINT scope_state_pkey PRIMARY KEY (user_pk),
    CONSTRAINT scope_state_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE,
    CONSTRAINT scope_state_code_chk CHECK (state_code IN (0, 1, 2)),
    CONSTRAINT scope_state_fields_chk CHECK (
           (state_code = 0
            AND initializer_source_id IS NULL AND initialization_id IS NULL
            AND lease_expires_at IS NULL
            AND initialized_at IS NULL AND initialized_by_source_id IS NULL)
        OR (state_code = 1
            AND initializer_source_id IS NOT NULL AND initialization_id IS NOT NULL
            AND lease_expires_at IS NOT NULL
            AND initialized_at IS NULL AND initialized_by_source_id IS NULL)
        OR (state_code = 2
            AND initializer_source_id IS NULL AND initialization_id IS NULL
            AND lease_expires_at IS NULL
            AND initialized_at IS NOT NULL AND initialized_by_source_id IS NOT NULL))
);

-- A source (one client install, or a server-side writer) of a user: the source bundle ids it
-- committed run 1, 2, 3...; a retired source names its replacement and why.
CREATE TABLE sync.source_state (
    user_pk                        bigint NOT NULL,
    source_id                      text   NOT NULL,
    state                          text   NOT NULL,
    max_committed_source_bundle_id bigint NOT NULL DEFAULT 0,
    replaced_by_source_id          text   NOT NULL DEFAULT '',
    retirement_reason              text   NOT NULL DEFAULT '',
    CONSTRAINT source_state_pkey PRIMARY KEY (user_pk, source_id),
    CONSTRAINT source_state_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE,
    CONSTRAINT source_state_state_chk CHECK (state IN ('active', 'reserved', 'retired')),
    CONSTRAINT source_state_max_committed_chk CHECK (max_committed_source_bundle_id >= 0),
    CONSTRAINT source_state_active_chk
        CHECK (state <> 'active' OR (replaced_by_source_id = '' AND retirement_reason = '')),
    CONSTRAINT source_state_reserved_chk
        CHECK (state <> 'reserved'
               OR (replaced_by_source_id = '' AND retirement_reason = ''
                   AND max_committed_source_bundle_id = 0)),
    CONSTRAINT source_state_retired_chk
        CHECK (state <> 'retired' OR (replaced_by_source_id <> '' AND retirement_reason <> ''))
);

-- ---------------------------------------------------------------------------- per row

-- The bundle that last wrote each row of a user, and whether that write deleted it.
CREATE TABLE sync.row_state (
    user_pk    bigint  NOT NULL,
    table_id   integer NOT NULL,
    key_bytes  bytea   NOT NULL,
    bundle_seq bigint  NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    CONSTRAINT row_state_pkey PRIMARY KEY (user_pk, table_id, key_bytes),
    CONSTRAINT row_state_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE,
    CONSTRAINT row_state_table_id_fkey FOREIGN KEY (table_id)
        REFERENCES sync.table_catalog (table_id)
);

-- What the capture trigger saw in the current transaction, in order; the finalization of the
-- bundle reads and deletes the rows of (txid, user_pk). op_code 1 INSERT, 2 UPDATE, 3 DELETE
-- (payload NULL).
CREATE TABLE sync.bundle_capture_stage (
    capture_ordinal bigint GENERATED ALWAYS AS IDENTITY,
    txid            bigint   NOT NULL,
    user_pk         bigint   NOT NULL,
    table_id        integer  NOT NULL,
    op_code         smallint NOT NULL,
    key_bytes       bytea    NOT NULL,
    payload_db      jsonb,
    CONSTRAINT bundle_capture_stage_pkey PRIMARY KEY (capture_ordinal),
    CONSTRAINT bundle_capture_stage_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE,
    CONSTRAINT bundle_capture_stage_table_id_fkey FOREIGN KEY (table_id)
        REFERENCES sync.table_catalog (table_id),
    CONSTRAINT bundle_capture_stage_op_code_chk CHECK (op_code IN (1, 2, 3)),
    CONSTRAINT bundle_capture_stage_payload_by_op_chk CHECK (
           (op_code = 3 AND payload_db IS NULL)
        OR (op_code IN (1, 2) AND payload_db IS NOT NULL))
);

-- ---------------------------------------------------------------------------- bundles

-- Committed bundles of a user: bundle_seq 1, 2, 3... per user; bundle_hash the 32 raw bytes of
-- the SHA-256, byte_count the length of the hashed canonical text.
CREATE TABLE sync.bundle_log (
    user_pk          bigint      NOT NULL,
    bundle_seq       bigint      NOT NULL,
    source_id        text        NOT NULL,
    source_bundle_id bigint      NOT NULL,
    row_count        bigint      NOT NULL,
    byte_count       bigint      NOT NULL,
    bundle_hash      bytea       NOT NULL,
    committed_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bundle_log_pkey PRIMARY KEY (user_pk, bundle_seq),
    CONSTRAINT bundle_log_source_tuple_key UNIQUE (user_pk, source_id, source_bundle_id),
    CONSTRAINT bundle_log_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE
);

-- The rows of a committed bundle, row_ordinal 1...N, payloads as sent on the wire.
CREATE TABLE sync.bundle_rows (
    user_pk      bigint   NOT NULL,
    bundle_seq   bigint   NOT NULL,
    row_ordinal  bigint   NOT NULL,
    table_id     integer  NOT NULL,
    key_bytes    bytea    NOT NULL,
    op_code      smallint NOT NULL,
    payload_wire json,
    CONSTRAINT bundle_rows_pkey PRIMARY KEY (user_pk, bundle_seq, row_ordinal),
    CONSTRAINT bundle_rows_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE,
    CONSTRAINT bundle_rows_table_id_fkey FOREIGN KEY (table_id)
        REFERENCES sync.table_catalog (table_id),
    CONSTRAINT bundle_rows_bundle_fk FOREIGN KEY (user_pk, bundle_seq)
        REFERENCES sync.bundle_log (user_pk, bundle_seq) ON DELETE CASCADE,
    CONSTRAINT bundle_rows_op_code_chk CHECK (op_code IN (1, 2, 3)),
    CONSTRAINT bundle_rows_payload_by_op_chk CHECK (
           (op_code = 3 AND payload_wire IS NULL)
        OR (op_code IN (1, 2) AND payload_wire IS NOT NULL))
);

-- -------------------------------------------------------------------- upload sessions

-- A push being staged chunk by chunk: rows 0...planned_row_count-1.
CREATE TABLE sync.push_sessions (
    push_id                   uuid        NOT NULL,
    user_pk                   bigint      NOT NULL,
    source_id                 text        NOT NULL,
    source_bundle_id          bigint      NOT NULL,
    planned_row_count         bigint      NOT NULL,
    next_expected_row_ordinal bigint      NOT NULL DEFAULT 0,
    initialization_id         uuid,
    expires_at                timestamptz NOT NULL,
    CONSTRAINT push_sessions_pkey PRIMARY KEY (push_id),
    CONSTRAINT push_sessions_source_tuple_key UNIQUE (user_pk, source_id, source_bundle_id),
    CONSTRAINT push_sessions_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE,
    CONSTRAINT push_sessions_row_count_chk CHECK (
            planned_row_count > 0
        AND next_expected_row_ordinal >= 0
        AND next_expected_row_ordinal <= planned_row_count)
);

CREATE TABLE sync.push_session_rows (
    push_id         uuid     NOT NULL,
    row_ordinal     bigint   NOT NULL,
    table_id        integer  NOT NULL,
    key_bytes       bytea    NOT NULL,
    op_code         smallint NOT NULL,
    base_bundle_seq bigint   NOT NULL,
    payload_apply   json,
    CONSTRAINT push_session_rows_pkey PRIMARY KEY (push_id, row_ordinal),
    CONSTRAINT push_session_rows_push_id_fkey FOREIGN KEY (push_id)
        REFERENCES sync.push_sessions (push_id) ON DELETE CASCADE,
    CONSTRAINT push_session_rows_table_id_fkey FOREIGN KEY (table_id)
        REFERENCES sync.table_catalog (table_id),
    CONSTRAINT push_session_rows_op_code_chk CHECK (op_code IN (1, 2, 3)),
    CONSTRAINT push_session_rows_payload_by_op_chk CHECK (
           (op_code = 3 AND payload_apply IS NULL)
        OR (op_code IN (1, 2) AND payload_apply IS NOT NULL))
);

-- ------------------------------------------------------------------ snapshot sessions

-- A frozen copy of a user's live rows at snapshot_bundle_seq, read page by page (ordinals 1...N).
CREATE TABLE sync.snapshot_sessions (
    snapshot_id         uuid        NOT NULL,
    user_pk             bigint      NOT NULL,
    snapshot_bundle_seq bigint      NOT NULL,
    row_count           bigint      NOT NULL DEFAULT 0,
    byte_count          bigint      NOT NULL DEFAULT 0,
    expires_at          timestamptz NOT NULL,
    CONSTRAINT snapshot_sessions_pkey PRIMARY KEY (snapshot_id),
    CONSTRAINT snapshot_sessions_user_pk_fkey FOREIGN KEY (user_pk)
        REFERENCES sync.user_state (user_pk) ON DELETE CASCADE
);

CREATE TABLE sync.snapshot_session_rows (
    snapshot_id  uuid    NOT NULL,
    row_ordinal  bigint  NOT NULL,
    table_id     integer NOT NULL,
    key_bytes    bytea   NOT NULL,
    bundle_seq   bigint  NOT NULL,
    payload_wire json    NOT NULL,
    CONSTRAINT snapshot_session_rows_pkey PRIMARY KEY (snapshot_id, row_ordinal),
    CONSTRAINT snapshot_session_rows_logical_row_key UNIQUE (snapshot_id, table_id, key_bytes),
    CONSTRAINT snapshot_session_rows_snapshot_id_fkey FOREIGN KEY (snapshot_id)
        REFERENCES sync.snapshot_sessions (snapshot_id) ON DELETE CASCADE,
    CONSTRAINT snapshot_session_rows_table_id_fkey FOREIGN KEY (table_id)
        REFERENCES sync.table_catalog (table_id)
);

-- ---------------------------------------------------------------------------- indexes

CREATE INDEX bcs_tx_user_ordinal_idx ON sync.bundle_capture_stage (txid, user_pk, capture_ordinal);
CREATE INDEX rs_user_live_snapshot_idx ON sync.row_state (user_pk, table_id, key_bytes)
    WHERE deleted = false;
CREATE INDEX ps_expires_at_idx ON sync.push_sessions (expires_at);
CREATE INDEX ss_expires_at_idx ON sync.snapshot_sessions (expires_at);
-- The same columns as snapshot_session_rows_logical_row_key: redundant, but part of the layout.
CREATE UNIQUE INDEX ssr_snapshot_table_key_idx
    ON sync.snapshot_session_rows (snapshot_id, table_id, key_bytes);

-- -------------------------------------------------------------------------- counters

-- Read by the status endpoint: accepted push replays (never advanced by the reference),
-- writes to registered tables refused for want of bundle context (advanced by the triggers
-- below, also when the refused transaction rolls back), pulls answered history_pruned.
CREATE SEQUENCE sync.accepted_push_replay_seq;
CREATE SEQUENCE sync.rejected_registered_write_seq;
CREATE SEQUENCE sync.history_pruned_error_seq;

-- -------------------------------------------------------------------- trigger functions
--
-- Installed per registered table by src/bundle/schema.c (and by the go-oversync library, which
-- runs these very bodies when it adopts this layout):
--   oversync_bundle_owner_guard  BEFORE INSERT OR UPDATE OR DELETE, FOR EACH ROW
--       → sync.enforce_registered_row_owner()
--   oversync_bundle_capture_row  AFTER INSERT OR UPDATE OR DELETE, FOR EACH ROW
--       → sync.capture_registered_row_change('<key column>', '<key kind>', '<table_id>')
-- A write is in "bundle context" when the transaction-local setting oversync.bundle_user_id
-- names the writing user (and oversync.bundle_user_pk its user_state.user_pk). Messages and
-- SQLSTATEs are part of the contract: clients and tests match them.

-- The owner guard: no write without bundle context; a user writes only rows of its own scope,
-- and a row never changes scope. An INSERT without _sync_scope_id gets the writing user's.
CREATE FUNCTION sync.enforce_registered_row_owner() RETURNS trigger
LANGUAGE plpgsql
AS $guard$
DECLARE
    actor text := nullif(current_setting('oversync.bundle_user_id', true), '');
BEGIN
    IF actor IS NULL THEN
        -- counted even though the refusal rolls the transaction back: sequences do not roll back
        PERFORM nextval('sync.rejected_registered_write_seq');
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = format(
            'write to registered table %I.%I requires oversync sync bundle context',
            TG_TABLE_SCHEMA, TG_TABLE_NAME);
    END IF;

    CASE TG_OP
    WHEN 'INSERT' THEN
        IF coalesce(NEW._sync_scope_id, '') = '' THEN
            NEW._sync_scope_id := actor;
        ELSIF NEW._sync_scope_id <> actor THEN
            RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = format(
                'scope mismatch on registered table %I.%I: actor %s cannot write owner %s',
                TG_TABLE_SCHEMA, TG_TABLE_NAME, actor, NEW._sync_scope_id);
        END IF;
        RETURN NEW;
    WHEN 'UPDATE' THEN
        IF OLD._sync_scope_id <> actor THEN
            RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = format(
                'scope mismatch on registered table %I.%I: actor %s cannot update owner %s',
                TG_TABLE_SCHEMA, TG_TABLE_NAME, actor, OLD._sync_scope_id);
        END IF;
        IF NEW._sync_scope_id IS DISTINCT FROM OLD._sync_scope_id THEN
            RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = format(
                'scope mutation is not allowed on registered table %I.%I',
                TG_TABLE_SCHEMA, TG_TABLE_NAME);
        END IF;
        RETURN NEW;
    ELSE
        IF OLD._sync_scope_id <> actor THEN
            RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = format(
                'scope mismatch on registered table %I.%I: actor %s cannot delete owner %s',
                TG_TABLE_SCHEMA, TG_TABLE_NAME, actor, OLD._sync_scope_id);
        END IF;
        RETURN OLD;
    END CASE;
END
$guard$;

-- The capture: each row effect becomes a row of sync.bundle_capture_stage for the current
-- transaction: (txid_current(), user_pk, table_id, op 1|2|3, key bytes, the row as jsonb
-- without _sync_scope_id, or NULL for a delete). The key is the text of the key column in the
-- row's jsonb, sent as the 16 bytes of a uuid (kind 1) or as UTF-8 (any other kind). An UPDATE
-- that changes the key is a DELETE of the old key followed by an INSERT of the new one.
CREATE FUNCTION sync.capture_registered_row_change() RETURNS trigger
LANGUAGE plpgsql
AS $capture$
DECLARE
    actor        text := nullif(current_setting('oversync.bundle_user_id', true), '');
    actor_pk_arg text;
    key_col      text;
    kind_arg     text;
    table_id_arg text;
    actor_pk     bigint;
    tbl          integer;
    kind         smallint;
    old_key      bytea;
    new_key      bytea;
BEGIN
    IF actor IS NULL THEN
        PERFORM nextval('sync.rejected_registered_write_seq');
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = format(
            'write to registered table %I.%I requires oversync sync bundle context',
            TG_TABLE_SCHEMA, TG_TABLE_NAME);
    END IF;

    actor_pk_arg := nullif(current_setting('oversync.bundle_user_pk', true), '');
    key_col := nullif(TG_ARGV[0], '');
    kind_arg := nullif(TG_ARGV[1], '');
    table_id_arg := nullif(TG_ARGV[2], '');
    IF actor_pk_arg IS NULL THEN
        RAISE EXCEPTION 'oversync bundle context is missing user_pk for %.%',
            TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;
    IF key_col IS NULL THEN
        RAISE EXCEPTION 'oversync capture trigger is missing sync key column for %.%',
            TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;
    IF kind_arg IS NULL OR table_id_arg IS NULL THEN
        RAISE EXCEPTION 'oversync capture trigger is missing compact metadata for %.%',
            TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;
    actor_pk := actor_pk_arg::bigint;
    tbl := table_id_arg::integer;
    kind := kind_arg::smallint;

    IF TG_OP = 'DELETE' THEN
        IF OLD._sync_scope_id <> actor THEN
            RAISE EXCEPTION 'oversync capture scope mismatch for %.%', TG_TABLE_SCHEMA, TG_TABLE_NAME;
        END IF;
        old_key := CASE WHEN kind = 1 THEN uuid_send((to_jsonb(OLD) ->> key_col)::uuid)
                        ELSE convert_to(to_jsonb(OLD) ->> key_col, 'UTF8') END;
        INSERT INTO sync.bundle_capture_stage (txid, user_pk, table_id, op_code, key_bytes, payload_db)
        VALUES (txid_current(), actor_pk, tbl, 3, old_key, NULL);
        RETURN OLD;
    END IF;

    IF NEW._sync_scope_id <> actor THEN
        RAISE EXCEPTION 'oversync capture scope mismatch for %.%', TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;
    new_key := CASE WHEN kind = 1 THEN uuid_send((to_jsonb(NEW) ->> key_col)::uuid)
                    ELSE convert_to(to_jsonb(NEW) ->> key_col, 'UTF8') END;

    IF TG_OP = 'UPDATE' THEN
        IF OLD._sync_scope_id <> actor THEN
            RAISE EXCEPTION 'oversync capture scope mismatch for %.%', TG_TABLE_SCHEMA, TG_TABLE_NAME;
        END IF;
        old_key := CASE WHEN kind = 1 THEN uuid_send((to_jsonb(OLD) ->> key_col)::uuid)
                        ELSE convert_to(to_jsonb(OLD) ->> key_col, 'UTF8') END;
        IF old_key IS DISTINCT FROM new_key THEN
            INSERT INTO sync.bundle_capture_stage (txid, user_pk, table_id, op_code, key_bytes, payload_db)
            VALUES (txid_current(), actor_pk, tbl, 3, old_key, NULL);
            INSERT INTO sync.bundle_capture_stage (txid, user_pk, table_id, op_code, key_bytes, payload_db)
            VALUES (txid_current(), actor_pk, tbl, 1, new_key, to_jsonb(NEW) - '_sync_scope_id');
            RETURN NEW;
        END IF;
    END IF;

    INSERT INTO sync.bundle_capture_stage (txid, user_pk, table_id, op_code, key_bytes, payload_db)
    VALUES (txid_current(), actor_pk, tbl, CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE 2 END, new_key,
            to_jsonb(NEW) - '_sync_scope_id');
    RETURN NEW;
END
$capture$;
