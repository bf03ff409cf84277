-- oversyncd: the change log's payload as json, the text a download sends (issue #11, item 3).
-- A download page passes each payload through; from a jsonb column PostgreSQL must print every
-- payload again for every page that carries it (most of a page's cost), from a json column it
-- copies the stored text. oversyncd writes the change log's payloads from jsonb (to_json of the
-- upload's jsonb value: the text jsonb prints, which is what downloads sent before this
-- migration), so the wire stays byte for byte the same, and the conversion below keeps every
-- existing row's text exactly as a download printed it (jsonb::json is that text). The after-images
-- (sync.sync_state) and the failure log stay jsonb: oversyncd reads them with jsonb operators.
-- The conversion rewrites the change log (and rebuilds its indexes) under an exclusive lock.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = 'sync.server_change_log'::regclass AND a.attname = 'payload'
                  AND a.atttypid = 'jsonb'::regtype AND NOT a.attisdropped) THEN
        ALTER TABLE sync.server_change_log ALTER COLUMN payload TYPE json USING payload::json;
    END IF;
END
$$;
