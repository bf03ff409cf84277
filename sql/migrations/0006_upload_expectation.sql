-- oversyncd: the error of an optimistic upload write (issue #11).
-- An upload whose changes only create or update rows (no deletes, no materialized tables, no
-- foreign-key references) is first written in one round trip, without reading the rows first:
-- each change expects its row at the version it names. The statement calls this function when a
-- row was not where the change expected it (a conflict), which fails the transaction; oversyncd
-- then rolls back and writes the upload the careful way (read, classify, write), which answers
-- the conflict. The error code OV001 is how oversyncd tells this case from any other error.
CREATE OR REPLACE FUNCTION sync.upload_expectation_failed(n_ok bigint, n_rows bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'OV001',
        MESSAGE = format('oversyncd: %s of %s rows of an upload were not at the version it expected; '
                         'the upload is written again after reading them', n_rows - n_ok, n_rows);
END
$$;
