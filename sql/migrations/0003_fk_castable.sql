-- oversyncd: helper for the foreign-key pre-check (SPEC §6.3).
-- Payload values whose parent column type oversyncd cannot check in C are first tested with
-- this function, so a value that does not even cast to the parent's type is reported for its
-- change alone (precheck_error) instead of failing the whole upload.
CREATE OR REPLACE FUNCTION sync.fk_castable(v text, type_name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    EXECUTE format('SELECT %L::%s', v, type_name);
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END
$$;
