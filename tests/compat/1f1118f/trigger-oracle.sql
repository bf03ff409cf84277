-- The two trigger functions of the bundle sidecar, driven through every path they have, for
-- tests/compat/check-bundle-schema.sh: run with psql on a database whose functions oversyncd
-- created and on one whose functions the go-oversync library created (both bootstrapped with the
-- tables of business.sql); the two outputs must be identical. After each statement the result
-- is printed as "SQLSTATE message" (00000 and nothing for success); the capture rows of each
-- transaction are printed before it rolls back. Nothing printed depends on object ids, txids or
-- the clock.
\set ON_ERROR_STOP 0
\set QUIET 1
\pset format unaligned
\pset tuples_only on
\pset null NULL

INSERT INTO sync.user_state (user_id) VALUES ('alice'), ('bob');

-- what the capture wrote in this transaction
PREPARE stage AS
    SELECT table_id, op_code, encode(key_bytes, 'hex'), payload_db, user_pk = (SELECT user_pk FROM sync.user_state WHERE user_id = 'alice') AS by_alice
      FROM sync.bundle_capture_stage WHERE txid = txid_current() ORDER BY capture_ordinal;
PREPARE alice AS
    SELECT 'context alice' FROM (SELECT set_config('oversync.bundle_user_id', 'alice', true),
        set_config('oversync.bundle_user_pk', (SELECT user_pk::text FROM sync.user_state WHERE user_id = 'alice'), true)) s;
PREPARE bob AS
    SELECT 'context bob' FROM (SELECT set_config('oversync.bundle_user_id', 'bob', true),
        set_config('oversync.bundle_user_pk', (SELECT user_pk::text FROM sync.user_state WHERE user_id = 'bob'), true)) s;

\echo == no bundle context
INSERT INTO business.users (id, name, email) VALUES ('11111111-1111-4111-8111-111111111111', 'Ada', 'a@x');
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
BEGIN;
SELECT set_config('oversync.bundle_user_id', '', true);
INSERT INTO business.files (id, name, data) VALUES ('11111111-1111-4111-8111-111111111111', 'f', '\x00');
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;

\echo == rows of alice and bob, committed
BEGIN;
EXECUTE alice;
INSERT INTO business.users (id, name, email, created_at, updated_at)
VALUES ('11111111-1111-4111-8111-111111111111', 'Ada', 'a@x', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
EXECUTE stage;
COMMIT;
BEGIN;
EXECUTE bob;
INSERT INTO business.users (_sync_scope_id, id, name, email, created_at, updated_at)
VALUES ('bob', '22222222-2222-4222-8222-222222222222', 'Bob', 'b@x', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
COMMIT;

\echo == update and delete without context
UPDATE business.users SET name = 'Eve';
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
DELETE FROM business.users;
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''

\echo == alice: insert, update, key change, delete, text payloads of every column type
BEGIN;
EXECUTE alice;
INSERT INTO business.posts (id, title, content, author_id, created_at, updated_at)
VALUES ('33333333-3333-4333-8333-333333333333', 'Hi', 'there', '11111111-1111-4111-8111-111111111111',
        '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
UPDATE business.posts SET title = 'Hello';
UPDATE business.posts SET id = '44444444-4444-4444-8444-444444444444', content = 'moved';
UPDATE business.posts SET title = title;
INSERT INTO business.typed_rows (_sync_scope_id, id, name, note, count_value, enabled_flag, rating, data, created_at)
VALUES ('', '55555555-5555-4555-8555-555555555555', 'typed', NULL, 9007199254740993, 0, -0.5, '\x00ff',
        '2026-03-22T12:00:00.5Z');
DELETE FROM business.posts;
INSERT INTO business.categories (id, name) VALUES ('66666666-6666-4666-8666-666666666666', 'root');
INSERT INTO business.categories (id, name, parent_id)
VALUES ('77777777-7777-4777-8777-777777777777', 'leaf', '66666666-6666-4666-8666-666666666666');
DELETE FROM business.categories WHERE parent_id IS NULL;
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
EXECUTE stage;
ROLLBACK;

\echo == the owner guard
BEGIN;
EXECUTE bob;
INSERT INTO business.users (_sync_scope_id, id, name, email) VALUES ('alice', '88888888-8888-4888-8888-888888888888', 'X', 'x@x');
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE bob;
UPDATE business.users SET name = 'Eve' WHERE id = '11111111-1111-4111-8111-111111111111';
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE bob;
DELETE FROM business.users WHERE id = '11111111-1111-4111-8111-111111111111';
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
UPDATE business.users SET _sync_scope_id = 'bob' WHERE id = '11111111-1111-4111-8111-111111111111';
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
UPDATE business.users SET _sync_scope_id = NULL WHERE id = '11111111-1111-4111-8111-111111111111';
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;

\echo == a user id without user_pk
BEGIN;
SELECT set_config('oversync.bundle_user_id', 'alice', true);
INSERT INTO business.files (id, name, data) VALUES ('99999999-9999-4999-8999-999999999999', 'f', '\x00');
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
SELECT set_config('oversync.bundle_user_id', 'alice', true), set_config('oversync.bundle_user_pk', 'twelve', true);
INSERT INTO business.files (id, name, data) VALUES ('99999999-9999-4999-8999-999999999999', 'f', '\x00');
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;

\echo == the capture function alone, with every kind of trigger argument
CREATE SCHEMA oracle;
CREATE TABLE oracle.scratch (_sync_scope_id text, id text, v int);
CREATE TRIGGER a_no_key AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 1)
    EXECUTE FUNCTION sync.capture_registered_row_change('', '1', '1');
CREATE TRIGGER b_no_kind AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 2)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', '', '1');
CREATE TRIGGER c_no_table AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 3)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', '2');
CREATE TRIGGER d_bad_kind AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 4)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', 'x', '1');
CREATE TRIGGER e_other_kind_ins AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 5)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', '7', '1');
CREATE TRIGGER e_other_kind_upd AFTER UPDATE ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 5)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', '7', '1');
CREATE TRIGGER e_other_kind_del AFTER DELETE ON oracle.scratch FOR EACH ROW WHEN (OLD.v = 5)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', '7', '1');
CREATE TRIGGER f_uuid_kind_on_text AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 6)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', '1', '1');
CREATE TRIGGER g_missing_column AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 7)
    EXECUTE FUNCTION sync.capture_registered_row_change('nope', '2', '1');
CREATE TRIGGER h_unknown_table AFTER INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 8)
    EXECUTE FUNCTION sync.capture_registered_row_change('id', '2', '999');
CREATE TRIGGER i_guard_alone BEFORE INSERT ON oracle.scratch FOR EACH ROW WHEN (NEW.v = 9)
    EXECUTE FUNCTION sync.enforce_registered_row_owner();
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 1);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 2);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 3);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 4);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 5), (NULL, 'no scope', 5), ('alice', NULL, 5);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 5), (NULL, 'no scope', 5), ('bob', 'other', 5);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 5), (NULL, 'no scope', 5);
UPDATE oracle.scratch SET id = id || '2';
UPDATE oracle.scratch SET _sync_scope_id = 'bob' WHERE _sync_scope_id IS NULL;
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
EXECUTE stage;
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 5), ('bob', 'b', 0);
UPDATE oracle.scratch SET v = 5 WHERE _sync_scope_id = 'bob';
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 5), ('bob', 'b', 0);
DELETE FROM oracle.scratch;
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
EXECUTE stage;
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 6);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', '11111111-1111-4111-8111-111111111111', 6);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
EXECUTE stage;
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 7);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES ('alice', 'k', 8);
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;
BEGIN;
EXECUTE alice;
INSERT INTO oracle.scratch VALUES (NULL, 'k', 9), ('', 'k2', 9);
SELECT * FROM oracle.scratch ORDER BY id;
\echo :SQLSTATE :LAST_ERROR_MESSAGE
\set LAST_ERROR_MESSAGE ''
ROLLBACK;

\echo == refused writes counted
SELECT last_value, is_called FROM sync.rejected_registered_write_seq;
\echo == business rows left
SELECT _sync_scope_id, id, name FROM business.users ORDER BY id;
