-- The bundle hash inside PostgreSQL (SPEC-v2 §4.7, §4.11): Go's canonical JSON text of a jsonb
-- value and the bundle_hash / byte_count of a bundle's wire rows, for backends that write
-- business rows with plain SQL and finalize the bundle in the database. The output is bit-exact
-- with encoding/json (decode into any, marshal): keys sorted bytewise, no whitespace, numbers
-- parsed as float64 and printed shortest-round-trip in Go's layout, Go's string escaping (HTML
-- characters and U+2028/U+2029 escaped). tests/integration/check_canonical_sql.c compares it with
-- the Go-generated vectors of tests/unit/canonical_vectors.h.
--
-- These functions live in schema oversyncd, never in sync: schema sync must stay identical to the
-- reference library's layout. src/bundle/bundle_schema.c runs this file at every bundle bootstrap
-- (creating or adopting the layout), so everything here is CREATE OR REPLACE and idempotent.
--
-- What a jsonb cannot carry is out of scope by construction: jsonb has no negative zero (numeric
-- -0 is 0, so a payload's -0 hashes as 0 here but as -0 in Go), no \u0000 and no invalid UTF-8.
-- A number outside float64's range (|x| >= 2^1024 after rounding) makes Go's decoder fail; here it
-- raises numeric_value_out_of_range. A nonzero number that rounds to zero prints 0 (or -0 when
-- negative), as in Go.

DO $$
BEGIN
    IF to_regnamespace('oversyncd') IS NULL THEN
        CREATE SCHEMA oversyncd;
    END IF;
END
$$;

-- A JSON string literal with Go's escaping.
CREATE OR REPLACE FUNCTION oversyncd.canonical_json_string(s text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    i int;
BEGIN
    IF s !~ E'[\\x01-\\x1f"\\\\<>&\u2028\u2029]' THEN
        RETURN '"' || s || '"';
    END IF;
    s := replace(s, '\', '\\');
    s := replace(s, '"', '\"');
    s := replace(s, '<', '\u003c');
    s := replace(s, '>', '\u003e');
    s := replace(s, '&', '\u0026');
    s := replace(s, U&'\2028', '\u2028');
    s := replace(s, U&'\2029', '\u2029');
    IF s ~ E'[\\x01-\\x1f]' THEN
        s := replace(s, E'\n', '\n');
        s := replace(s, E'\r', '\r');
        s := replace(s, E'\t', '\t');
        s := replace(s, E'\b', '\b');
        s := replace(s, E'\f', '\f');
        IF s ~ E'[\\x01-\\x1f]' THEN
            FOR i IN 1..31 LOOP
                IF strpos(s, chr(i)) > 0 THEN
                    s := replace(s, chr(i), '\u00' || lpad(to_hex(i), 2, '0'));
                END IF;
            END LOOP;
        END IF;
    END IF;
    RETURN '"' || s || '"';
END
$fn$;

-- A number as Go prints the float64 nearest to it. Relies on float8 output being shortest
-- round-trip, i.e. extra_float_digits >= 1 (the public entry points below set it).
CREATE OR REPLACE FUNCTION oversyncd.canonical_json_number(n numeric) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    f float8;
    t text;
    neg boolean;
    epos int;
    e int := 0;
    m text;
    dot int;
    digits text;
    point int;   -- the value is 0.<digits> * 10^point
    x int;       -- Go's decimal exponent: d.ddd * 10^x
    nd int;
    cand text;
    up boolean;
BEGIN
    IF n = 0 THEN
        RETURN '0';   -- numeric has no negative zero
    END IF;
    IF abs(n) BETWEEN 1e-300 AND 1e300 THEN
        f := n::float8;
    ELSE
        BEGIN
            f := n::float8;
        EXCEPTION WHEN numeric_value_out_of_range THEN
            IF abs(n) < 1 THEN
                -- underflow: the nearest float64 is zero, signed like Go's
                RETURN CASE WHEN n < 0 THEN '-0' ELSE '0' END;
            END IF;
            RAISE EXCEPTION 'number % is out of float64 range', left(n::text, 40) || CASE WHEN length(n::text) > 40 THEN '...' ELSE '' END
                USING ERRCODE = 'numeric_value_out_of_range';
        END;
    END IF;
    IF current_setting('extra_float_digits')::int < 1 THEN
        RAISE EXCEPTION 'oversyncd.canonical_json_number needs extra_float_digits >= 1';
    END IF;
    t := f::text;
    neg := left(t, 1) = '-';
    IF neg THEN
        t := substr(t, 2);
    END IF;
    epos := strpos(t, 'e');
    IF epos > 0 THEN
        e := substr(t, epos + 1)::int;
        m := left(t, epos - 1);
    ELSE
        m := t;
    END IF;
    dot := strpos(m, '.');
    IF dot > 0 THEN
        digits := left(m, dot - 1) || substr(m, dot + 1);
        point := dot - 1 + e;
    ELSE
        digits := m;
        point := length(m) + e;
    END IF;
    -- leading zeros move the point, trailing zeros are dropped
    nd := length(digits);
    digits := ltrim(digits, '0');
    point := point - (nd - length(digits));
    digits := rtrim(digits, '0');
    nd := length(digits);
    IF nd = 0 THEN
        RETURN CASE WHEN neg THEN '-0' ELSE '0' END;
    END IF;
    -- PostgreSQL's shortest output excludes the rounding interval's bounds, Go's includes them
    -- when the mantissa is even: a shorter decimal exactly halfway to a neighbour (8.41e+21,
    -- -8e+23) prints as 8.409999999999999e+21 here. Such a decimal is the truncation of the
    -- digits one place shorter or the next one up; try both, and again on success.
    IF get_byte(float8send(f), 7) & 1 = 0 THEN
        LOOP
            EXIT WHEN nd < 2;
            m := left(digits, nd - 1);
            e := point - (nd - 1);
            IF (m || 'e' || e)::float8 = abs(f) THEN
                cand := m;
            ELSE
                m := ((m::numeric) + 1)::text;
                -- (rounding up may leave float64's range: 1797693134862316e293)
                up := length(m) + e < 309 OR (m || 'e' || e)::numeric <= 1.7976931348623157e308;
                IF up THEN
                    up := (m || 'e' || e)::float8 = abs(f);
                END IF;
                IF up THEN
                    cand := m;
                ELSE
                    EXIT;
                END IF;
            END IF;
            point := length(cand) + e;
            digits := rtrim(cand, '0');
            nd := length(digits);
        END LOOP;
    END IF;
    x := point - 1;
    IF x < -6 OR x >= 21 THEN
        t := left(digits, 1);
        IF nd > 1 THEN
            t := t || '.' || substr(digits, 2);
        END IF;
        t := t || 'e' || CASE WHEN x < 0 THEN '-' ELSE '+' END || abs(x)::text;
    ELSIF point <= 0 THEN
        t := '0.' || repeat('0', -point) || digits;
    ELSIF point < nd THEN
        t := left(digits, point) || '.' || substr(digits, point + 1);
    ELSE
        t := digits || repeat('0', point - nd);
    END IF;
    RETURN CASE WHEN neg THEN '-' || t ELSE t END;
END
$fn$;

-- The canonical text of any jsonb value (helper: assumes extra_float_digits >= 1).
CREATE OR REPLACE FUNCTION oversyncd.canonical_json_value(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
BEGIN
    CASE jsonb_typeof(v)
    WHEN 'object' THEN
        RETURN '{' || coalesce((SELECT string_agg(oversyncd.canonical_json_string(k) || ':'
                                                  || oversyncd.canonical_json_value(e), ','
                                                  ORDER BY k COLLATE "C")
                                  FROM jsonb_each(v) AS x(k, e)), '') || '}';
    WHEN 'array' THEN
        RETURN '[' || coalesce((SELECT string_agg(oversyncd.canonical_json_value(e), ',' ORDER BY o)
                                  FROM jsonb_array_elements(v) WITH ORDINALITY AS x(e, o)), '') || ']';
    WHEN 'string' THEN
        RETURN oversyncd.canonical_json_string(v #>> '{}');
    WHEN 'number' THEN
        RETURN oversyncd.canonical_json_number((v #>> '{}')::numeric);
    WHEN 'boolean' THEN
        RETURN v::text;
    ELSE
        RETURN 'null';
    END CASE;
END
$fn$;

-- Go's encoding/json text of the value (decoded into any, marshalled). NULL gives NULL.
CREATE OR REPLACE FUNCTION oversyncd.canonical_json(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET extra_float_digits = 1
AS $fn$ SELECT oversyncd.canonical_json_value(v) $fn$;

-- The hashed text of a bundle (§4.7). rows is a jsonb array of wire rows in bundle order, each
-- {"schema":S,"table":T,"key":{...},"op":"INSERT"|"UPDATE"|"DELETE","row_version":V,"payload":{...}}
-- (payload ignored for DELETE; missing or null is null). An empty array (or NULL) gives "[]".
CREATE OR REPLACE FUNCTION oversyncd.bundle_hash_text(rows jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET extra_float_digits = 1
AS $fn$
SELECT '[' || coalesce(string_agg(
           '{"key":' || coalesce(oversyncd.canonical_json_value(r -> 'key'), 'null')
        || ',"op":' || oversyncd.canonical_json_string(coalesce(r ->> 'op', ''))
        || ',"payload":' || CASE WHEN r ->> 'op' = 'DELETE' THEN 'null'
                                 ELSE coalesce(oversyncd.canonical_json_value(r -> 'payload'), 'null') END
        || ',"row_ordinal":' || (o - 1)::text
        || ',"row_version":' || coalesce(oversyncd.canonical_json_number((r ->> 'row_version')::numeric), 'null')
        || ',"schema":' || oversyncd.canonical_json_string(coalesce(r ->> 'schema', ''))
        || ',"table":' || oversyncd.canonical_json_string(coalesce(r ->> 'table', ''))
        || '}', ',' ORDER BY o), '') || ']'
  FROM jsonb_array_elements(coalesce(rows, '[]'::jsonb)) WITH ORDINALITY AS x(r, o)
$fn$;

-- bundle_hash (lowercase hex SHA-256 of the text above) and byte_count (its length in bytes).
CREATE OR REPLACE FUNCTION oversyncd.bundle_hash(rows jsonb, OUT bundle_hash text, OUT byte_count bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT encode(sha256(convert_to(t, 'UTF8')), 'hex'), octet_length(t)::bigint
  FROM oversyncd.bundle_hash_text(rows) AS t
$fn$;
