-- The business schema of the go-oversync example server, for trying oversyncd with the
-- reference clients. sql/examples/oversyncd-business.conf registers these four tables with the
-- generic materializer.
--
--     psql "$DATABASE_URL" -f sql/examples/business.sql
--
-- Idempotent: running it again changes nothing. The tables hold no sync metadata; oversyncd
-- keeps that in the schema "sync", which it creates itself at start-up.
--
-- The foreign keys are ordinary ones. At start-up oversyncd makes them DEFERRABLE INITIALLY
-- DEFERRED (unless [sync] auto_migrate_fks = false), so that one upload may carry a child before
-- its parent.

CREATE SCHEMA IF NOT EXISTS business;

CREATE TABLE IF NOT EXISTS business.users (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz
);

CREATE TABLE IF NOT EXISTS business.posts (
    id         uuid PRIMARY KEY,
    author_id  uuid NOT NULL REFERENCES business.users (id),
    title      text NOT NULL,
    content    text,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz
);

-- data arrives base64-encoded in the JSON payload; the generic materializer decodes it.
CREATE TABLE IF NOT EXISTS business.files (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    data       bytea,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS business.file_reviews (
    id         uuid PRIMARY KEY,
    file_id    uuid NOT NULL REFERENCES business.files (id),
    review     text,
    created_at timestamptz DEFAULT now()
);
