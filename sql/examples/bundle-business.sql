-- The business tables of go-oversync 1f1118f's example server (examples/nethttp_server), for a
-- deployment of the bundle protocol ([sync] protocol = bundle, docs/bundle-protocol.md): the
-- demo of scripts/quickstart --bundle, the tables examples/mobile_flow syncs and verifies
-- (tests/compat/run-1f1118f.sh), and those the oversqlite_e2e tests expect in their own schema
-- (the e2e test hook of docs/compatibility.md creates them, from this file compiled into
-- oversyncd, in the schema it is given).
--
-- Every table is scoped by its owner, _sync_scope_id (the user), and keyed by (scope, uuid id);
-- references between them carry the scope and are deferred to commit, so that one bundle may
-- write a child before its parent. The constraint names are the reference's.
--
--   psql -v business_schema=NAME -f business.sql     (default schema: business)

\if :{?business_schema}
\else
\set business_schema business
\endif

BEGIN;

CREATE SCHEMA IF NOT EXISTS :"business_schema";
SET LOCAL search_path TO :"business_schema";

CREATE TABLE users (
    _sync_scope_id text        NOT NULL,
    id             uuid        NOT NULL,
    name           text        NOT NULL,
    email          text        NOT NULL,
    created_at     timestamptz DEFAULT now(),
    updated_at     timestamptz DEFAULT now(),
    PRIMARY KEY (_sync_scope_id, id)
);

CREATE TABLE posts (
    _sync_scope_id text        NOT NULL,
    id             uuid        NOT NULL,
    title          text        NOT NULL,
    content        text        NOT NULL,
    author_id      uuid,
    created_at     timestamptz DEFAULT now(),
    updated_at     timestamptz DEFAULT now(),
    PRIMARY KEY (_sync_scope_id, id),
    CONSTRAINT posts_author_id_fkey FOREIGN KEY (_sync_scope_id, author_id)
        REFERENCES users (_sync_scope_id, id) DEFERRABLE INITIALLY DEFERRED
);

-- a tree: deleting a category deletes its subcategories
CREATE TABLE categories (
    _sync_scope_id text NOT NULL,
    id             uuid NOT NULL,
    name           text NOT NULL,
    parent_id      uuid,
    PRIMARY KEY (_sync_scope_id, id),
    CONSTRAINT categories_parent_id_fkey FOREIGN KEY (_sync_scope_id, parent_id)
        REFERENCES categories (_sync_scope_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);

-- teams and team_members reference each other (a cycle, closed below)
CREATE TABLE teams (
    _sync_scope_id    text NOT NULL,
    id                uuid NOT NULL,
    name              text NOT NULL,
    captain_member_id uuid,
    PRIMARY KEY (_sync_scope_id, id)
);

CREATE TABLE team_members (
    _sync_scope_id text NOT NULL,
    id             uuid NOT NULL,
    name           text NOT NULL,
    team_id        uuid NOT NULL,
    PRIMARY KEY (_sync_scope_id, id),
    CONSTRAINT team_members_team_id_fkey FOREIGN KEY (_sync_scope_id, team_id)
        REFERENCES teams (_sync_scope_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);

ALTER TABLE teams ADD CONSTRAINT teams_captain_member_id_fkey FOREIGN KEY (_sync_scope_id, captain_member_id)
    REFERENCES team_members (_sync_scope_id, id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE files (
    _sync_scope_id text  NOT NULL,
    id             uuid  NOT NULL,
    name           text  NOT NULL,
    data           bytea NOT NULL,
    PRIMARY KEY (_sync_scope_id, id)
);

CREATE TABLE file_reviews (
    _sync_scope_id text NOT NULL,
    id             uuid NOT NULL,
    review         text NOT NULL,
    file_id        uuid NOT NULL,
    PRIMARY KEY (_sync_scope_id, id),
    CONSTRAINT file_reviews_file_id_fkey FOREIGN KEY (_sync_scope_id, file_id)
        REFERENCES files (_sync_scope_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);

-- one column of each kind the client maps: nullable text, integers, floats, bytes, timestamps
CREATE TABLE typed_rows (
    _sync_scope_id text             NOT NULL,
    id             uuid             NOT NULL,
    name           text             NOT NULL,
    note           text,
    count_value    bigint,
    enabled_flag   bigint           NOT NULL,
    rating         double precision,
    data           bytea,
    created_at     timestamptz,
    PRIMARY KEY (_sync_scope_id, id)
);

COMMIT;
