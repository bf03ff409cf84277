-- The business tables of go-oversync 78e1be6's example server (examples/nethttp_server), with
-- the same columns, types, NOT NULLs and foreign keys, for the compatibility run
-- (tests/compat/run-78e1be6.sh). The mobile_flow simulator checks its uploads by reading these
-- tables and the sidecar directly, so they must have the reference's shape; oversyncd's
-- generic materializer (tables.conf beside this file) fills them.

CREATE SCHEMA business;

CREATE TABLE business.users (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE business.posts (
    id         uuid PRIMARY KEY,
    title      text NOT NULL,
    content    text NOT NULL,
    author_id  uuid REFERENCES business.users (id) DEFERRABLE INITIALLY DEFERRED,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
CREATE INDEX ON business.posts (author_id);

CREATE TABLE business.files (
    id   uuid PRIMARY KEY,
    name text NOT NULL,
    data bytea NOT NULL
);

CREATE TABLE business.file_reviews (
    id      uuid PRIMARY KEY,
    review  text NOT NULL,
    file_id uuid REFERENCES business.files (id) DEFERRABLE INITIALLY DEFERRED
);
