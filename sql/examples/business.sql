-- The business schema of the go-oversync example server (examples/nethttp_server), for trying
-- oversyncd with the reference clients: the same tables, columns, types, NOT NULL constraints,
-- defaults, foreign keys and index. Both sql/examples/oversyncd-business.conf and
-- lighttpd-example/oversyncd.conf register these four tables with the generic materializer.
--
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/examples/business.sql
--
-- Idempotent: running it again changes nothing. The tables hold no sync metadata; oversyncd
-- keeps that in the schema "sync", which it creates itself at start-up.
--
-- What clients must send (the generic materializer matches payload keys to these columns):
--   users         name and email (NOT NULL, no default); created_at and updated_at may be left
--                 out (they default to now()) or sent as RFC 3339 text or Unix seconds.
--   posts         title and content (NOT NULL); author_id may be null.
--   files         name and data (NOT NULL); data is base64 text in the JSON payload.
--   file_reviews  review (NOT NULL); file_id may be null, and may be a UUID or the base64 of its
--                 16 bytes (how the reference client sends BLOB keys).
--
-- The foreign keys are DEFERRABLE INITIALLY DEFERRED, as in the example server, so that one
-- upload may carry a child before its parent. (oversyncd would migrate ordinary ones to that at
-- start-up anyway, unless [sync] auto_migrate_fks = false.)

CREATE SCHEMA IF NOT EXISTS business;

CREATE TABLE IF NOT EXISTS business.users (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS business.posts (
    id         uuid PRIMARY KEY,
    title      text NOT NULL,
    content    text NOT NULL,
    author_id  uuid REFERENCES business.users (id) DEFERRABLE INITIALLY DEFERRED,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_posts_author_id ON business.posts (author_id);

CREATE TABLE IF NOT EXISTS business.files (
    id   uuid PRIMARY KEY,
    name text NOT NULL,
    data bytea NOT NULL
);

CREATE TABLE IF NOT EXISTS business.file_reviews (
    id      uuid PRIMARY KEY,
    review  text NOT NULL,
    file_id uuid REFERENCES business.files (id) DEFERRABLE INITIALLY DEFERRED
);
