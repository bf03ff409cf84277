// Command serverwrites runs one fixed sequence of server-originated writes (SPEC-v2 §4.11) against
// a database that tests/compat/check-server-writes.sh prepared, either through the go-oversync
// library of commit 1f1118f (ScopeManager.ExecWrite, SyncService.WithinSyncBundle) or through
// oversyncd's SQL functions (sync.begin_server_bundle / sync.commit_server_bundle, plain SQL over
// pgx, as any language would send it), or alternating the two. The script then compares what the
// databases hold: the same writes must give the same bundles, hashes, rows, row and source state,
// and the same errors. It is oversyncd's own test code; the library comes from the unpacked
// archive through a replace directive the script adds to go.mod.
//
//	serverwrites -db CONNINFO [-schema business] go|sql|mixed
//	serverwrites -db CONNINFO [-schema business] bootstrap
//
// The last form only runs the library's Bootstrap (prints "bootstrap ok"), to lay out an empty
// database the library's way.
//
// Prints one line per step ("step N: ok" or "step N: error: MESSAGE", the message being the
// library's error text or the PostgreSQL error's primary message), then the bundle-change
// notifications the run caused ("notify: PAYLOAD", user_pk replaced by the user id, which
// differs between databases: the library burns identity values). Exit status 0 unless the harness
// itself failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mobiletoly/go-oversync/oversync"
)

// The example server's registry (SPEC-v2 §5.3), in the order the example registers them.
var exampleTables = []string{
	"users", "posts", "categories", "teams", "team_members", "files", "file_reviews", "typed_rows",
}

func registered(schema string) []oversync.RegisteredTable {
	tables := make([]oversync.RegisteredTable, 0, len(exampleTables))
	for _, t := range exampleTables {
		tables = append(tables, oversync.RegisteredTable{Schema: schema, Table: t, SyncKeyColumns: []string{"id"}})
	}
	return tables
}

type stepKind int

const (
	execWrite stepKind = iota // ScopeManager.ExecWrite(user, writer) / begin_server_bundle(user, writer)
	within                    // WithinSyncBundle(user, (source, id)) / begin_server_bundle(user, source, id)
	setup                     // plain SQL outside any bundle, the same in every mode
)

type step struct {
	kind   stepKind
	user   string
	source string
	id     int64
	sql    []string
}

const (
	userA = "11111111-1111-4111-8111-111111111111"
	userB = "22222222-2222-4222-8222-222222222222"
)

// Timestamps are given explicitly so that nothing depends on the clock. %[1]s is the schema.
var steps = []step{
	// 1: rows of every table kind; an insert then delete vanishes, a key changed in the bundle
	// that created the row is an insert of the new key
	{kind: execWrite, user: "alice", source: "backend", sql: []string{
		`INSERT INTO %[1]s.users (id, name, email, created_at, updated_at) VALUES
		   ('` + userA + `', 'Ada', 'ada@example.com', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z'),
		   ('` + userB + `', 'Bob', 'bob@example.com', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z')`,
		`INSERT INTO %[1]s.posts (id, title, content, author_id, created_at, updated_at) VALUES
		   ('33333333-3333-4333-8333-333333333333', 'Hello', 'First post', '` + userA + `',
		    '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z')`,
		`UPDATE %[1]s.users SET name = 'Ada Lovelace' WHERE id = '` + userA + `'`,
		`UPDATE %[1]s.users SET id = '44444444-4444-4444-8444-444444444444' WHERE id = '` + userB + `'`,
		`INSERT INTO %[1]s.files (id, name, data) VALUES ('55555555-5555-4555-8555-555555555555', 'blob', '\x0001ff')`,
		`INSERT INTO %[1]s.file_reviews (id, review, file_id) VALUES
		   ('66666666-6666-4666-8666-666666666666', 'fine', '55555555-5555-4555-8555-555555555555')`,
		`INSERT INTO %[1]s.typed_rows (id, name, note, count_value, enabled_flag, rating, data, created_at) VALUES
		   ('77777777-7777-4777-8777-777777777777', 'typed', NULL, 9007199254740993, 1, 0.1, '\x00', '2026-03-22T12:00:00.5Z')`,
		`INSERT INTO %[1]s.categories (id, name) VALUES ('88888888-8888-4888-8888-888888888888', 'gone')`,
		`DELETE FROM %[1]s.categories WHERE id = '88888888-8888-4888-8888-888888888888'`,
	}},
	// 2: updates, a key change of a committed row (delete + insert), a cascade
	{kind: execWrite, user: "alice", source: "backend", sql: []string{
		`UPDATE %[1]s.users SET email = 'ada@lovelace.example' WHERE id = '` + userA + `'`,
		`UPDATE %[1]s.users SET id = '99999999-9999-4999-8999-999999999999' WHERE id = '44444444-4444-4444-8444-444444444444'`,
		`DELETE FROM %[1]s.posts WHERE id = '33333333-3333-4333-8333-333333333333'`,
		`DELETE FROM %[1]s.files WHERE id = '55555555-5555-4555-8555-555555555555'`,
		`UPDATE %[1]s.typed_rows SET rating = -2.5e-7, note = 'n' WHERE id = '77777777-7777-4777-8777-777777777777'`,
	}},
	// 3: a caller-chosen source tuple; a foreign-key cycle and a tree, deferred to commit
	{kind: within, user: "alice", source: "device-a", id: 1, sql: []string{
		`INSERT INTO %[1]s.teams (id, name, captain_member_id) VALUES
		   ('a0000000-0000-4000-8000-000000000001', 'red', 'b0000000-0000-4000-8000-000000000001')`,
		`INSERT INTO %[1]s.team_members (id, name, team_id) VALUES
		   ('b0000000-0000-4000-8000-000000000001', 'captain', 'a0000000-0000-4000-8000-000000000001'),
		   ('b0000000-0000-4000-8000-000000000002', 'member', 'a0000000-0000-4000-8000-000000000001')`,
		`INSERT INTO %[1]s.categories (id, name, parent_id) VALUES
		   ('c0000000-0000-4000-8000-000000000003', 'leaf', 'c0000000-0000-4000-8000-000000000002'),
		   ('c0000000-0000-4000-8000-000000000002', 'branch', 'c0000000-0000-4000-8000-000000000001'),
		   ('c0000000-0000-4000-8000-000000000001', 'root', NULL)`,
	}},
	// 4: another user; values whose canonical text is tricky
	{kind: execWrite, user: "bob", source: "importer", sql: []string{
		`INSERT INTO %[1]s.users (id, name, email, created_at, updated_at) VALUES
		   ('` + userA + `', E'<b>Bob</b> & "co" \u2028 \x01 é 😀', 'bob@example.com',
		    '2026-03-22T12:00:00.123456Z', '2026-03-22T12:00:00.1Z')`,
		`INSERT INTO %[1]s.typed_rows (id, name, note, count_value, enabled_flag, rating, data, created_at) VALUES
		   ('d0000000-0000-4000-8000-000000000001', 'big', E'tab\there\nnewline', 9223372036854775807, 0, 1e21, '', '2026-03-22T12:00:00Z'),
		   ('d0000000-0000-4000-8000-000000000002', 'small', '', -9007199254740993, -1, 1e-7, '\xdeadbeef', NULL),
		   ('d0000000-0000-4000-8000-000000000003', 'odd', NULL, NULL, 2, 'NaN', NULL, '2026-03-22T12:00:00.000001Z'),
		   ('d0000000-0000-4000-8000-000000000004', 'neg', NULL, 0, 3, '-0', NULL, NULL),
		   ('d0000000-0000-4000-8000-000000000005', 'float', NULL, 0, 4, 0.30000000000000004, NULL, NULL),
		   ('d0000000-0000-4000-8000-000000000006', 'wide', NULL, 0, 5, 123456789.12345678, NULL, NULL)`,
		`INSERT INTO %[1]s.files (id, name, data) VALUES
		   ('e0000000-0000-4000-8000-000000000001', 'long', decode(repeat('0123456789abcdef', 25), 'hex'))`,
	}},
	// 5: the tuple's next id; a cascade through the tree, an update and a delete in the cycle
	{kind: within, user: "alice", source: "device-a", id: 2, sql: []string{
		`DELETE FROM %[1]s.categories WHERE id = 'c0000000-0000-4000-8000-000000000001'`,
		`UPDATE %[1]s.teams SET name = 'blue' WHERE id = 'a0000000-0000-4000-8000-000000000001'`,
		`DELETE FROM %[1]s.team_members WHERE id = 'b0000000-0000-4000-8000-000000000002'`,
		`UPDATE %[1]s.typed_rows SET count_value = 1, data = '\xff' WHERE id = '77777777-7777-4777-8777-777777777777'`,
	}},
	// 6-10: refusals
	{kind: execWrite, user: "alice", source: "backend", sql: []string{
		`UPDATE %[1]s.users SET name = 'nobody' WHERE id = '00000000-0000-4000-8000-000000000000'`,
	}},
	{kind: execWrite, user: "", source: "backend", sql: nil},
	{kind: within, user: "carol", source: "device-c", id: 1, sql: nil},
	{kind: within, user: "alice", source: "device-a", id: 5, sql: nil},
	{kind: within, user: "alice", source: "device-a", id: 1, sql: nil},
	// 11: a scope being initialized by a client, and a retired source
	{kind: setup, sql: []string{
		`INSERT INTO sync.user_state (user_id) VALUES ('dave')`,
		`INSERT INTO sync.scope_state (user_pk, state_code, initializer_source_id, initialization_id, lease_expires_at)
		   SELECT user_pk, 1, 'phone', 'f0000000-0000-4000-8000-000000000001', '2099-01-02T03:04:05.123456Z'
		     FROM sync.user_state WHERE user_id = 'dave'`,
		`INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id,
		   replaced_by_source_id, retirement_reason)
		   SELECT user_pk, 'old', 'retired', 3, 'new', 'history_pruned' FROM sync.user_state WHERE user_id = 'alice'`,
	}},
	{kind: execWrite, user: "dave", source: "backend", sql: nil},
	{kind: within, user: "dave", source: "phone", id: 1, sql: nil},
	{kind: execWrite, user: "alice", source: "old", sql: nil},
	{kind: within, user: "alice", source: "old", id: 4, sql: nil},
	// 16-18: a writer continued through the tuple form and back; insert, update, re-key, delete
	{kind: execWrite, user: "erin", source: "backend", sql: []string{
		`INSERT INTO %[1]s.users (id, name, email, created_at, updated_at) VALUES
		   ('` + userA + `', 'e1', 'e@x', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z'),
		   ('` + userB + `', 'e2', 'e@y', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z')`,
		`UPDATE %[1]s.users SET name = 'e1b' WHERE id = '` + userA + `' AND _sync_scope_id = 'erin'`,
		`UPDATE %[1]s.users SET id = '44444444-4444-4444-8444-444444444444' WHERE id = '` + userA + `' AND _sync_scope_id = 'erin'`,
		`DELETE FROM %[1]s.users WHERE id = '` + userB + `' AND _sync_scope_id = 'erin'`,
	}},
	{kind: within, user: "erin", source: "backend", id: 2, sql: []string{
		`UPDATE %[1]s.users SET email = 'e@z' WHERE id = '44444444-4444-4444-8444-444444444444' AND _sync_scope_id = 'erin'`,
		`INSERT INTO %[1]s.users (id, name, email, created_at, updated_at) VALUES
		   ('` + userB + `', 'back', 'e@y', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z')`,
	}},
	{kind: execWrite, user: "erin", source: "backend", sql: []string{
		`DELETE FROM %[1]s.users WHERE id = '44444444-4444-4444-8444-444444444444' AND _sync_scope_id = 'erin'`,
		`UPDATE %[1]s.users SET name = 'again' WHERE id = '` + userB + `' AND _sync_scope_id = 'erin'`,
	}},
}

func main() {
	db := flag.String("db", "", "libpq connection string of the database")
	schema := flag.String("schema", "business", "schema of the example tables")
	flag.Parse()
	if *db == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: serverwrites -db CONNINFO [-schema NAME] go|sql|mixed|bootstrap")
		os.Exit(2)
	}
	if err := run(*db, *schema, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(db, schema, mode string) error {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()

	listener, err := pgx.Connect(ctx, db)
	if err != nil {
		return fmt.Errorf("connect the listener: %w", err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, `LISTEN oversync_bundle_change_v1`); err != nil {
		return fmt.Errorf("LISTEN: %w", err)
	}

	var manager *oversync.ScopeManager
	var svc *oversync.SyncService
	if mode == "go" || mode == "mixed" || mode == "bootstrap" {
		logger := slog.New(slog.NewTextHandler(io.Discard, nil))
		svc, err = oversync.NewRuntimeService(pool, &oversync.ServiceConfig{
			MaxSupportedSchemaVersion: 1,
			AppName:                   "oversyncd-compat",
			RegisteredTables:          registered(schema),
			BundleChangeWatch:         oversync.BundleChangeWatchConfig{Enabled: true},
		}, logger)
		if err != nil {
			return fmt.Errorf("NewRuntimeService: %w", err)
		}
		if err := svc.Bootstrap(ctx); err != nil {
			return fmt.Errorf("Bootstrap: %w", err)
		}
		if mode == "bootstrap" {
			fmt.Println("bootstrap ok")
			return nil
		}
		manager = oversync.NewScopeManager(svc, oversync.ScopeManagerConfig{})
	} else if mode != "sql" {
		return fmt.Errorf("unknown mode %q", mode)
	}

	schemaIdent := pgx.Identifier{schema}.Sanitize()
	for i, st := range steps {
		useGo := mode == "go" || (mode == "mixed" && i%2 == 0)
		statements := make([]string, len(st.sql))
		for j, s := range st.sql {
			statements[j] = strings.ReplaceAll(s, "%[1]s", schemaIdent)
		}
		var err error
		switch {
		case st.kind == setup:
			err = runSetup(ctx, pool, statements)
			if err != nil {
				return fmt.Errorf("step %d (setup): %w", i+1, err)
			}
		case useGo:
			err = viaLibrary(ctx, svc, manager, st, statements)
		default:
			err = viaSQL(ctx, pool, st, statements)
		}
		if err != nil {
			fmt.Printf("step %d: error: %s\n", i+1, message(err))
		} else {
			fmt.Printf("step %d: ok\n", i+1)
		}
	}
	return printNotifications(ctx, pool, listener)
}

func runSetup(ctx context.Context, pool *pgxpool.Pool, statements []string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, s := range statements {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
}

func execAll(ctx context.Context, tx pgx.Tx, statements []string) error {
	for _, s := range statements {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("write failed: %s: %w", s, err)
		}
	}
	return nil
}

// The library's writers.
func viaLibrary(ctx context.Context, svc *oversync.SyncService, manager *oversync.ScopeManager, st step,
	statements []string) error {
	fn := func(tx pgx.Tx) error { return execAll(ctx, tx, statements) }
	if st.kind == execWrite {
		_, err := manager.ExecWrite(ctx, st.user, oversync.ScopeWriteOptions{WriterID: st.source}, fn)
		return err
	}
	return svc.WithinSyncBundle(ctx, oversync.Actor{UserID: st.user},
		oversync.BundleSource{SourceID: st.source, SourceBundleID: st.id}, fn)
}

// oversyncd's SQL functions, in one transaction, as any client would send them.
func viaSQL(ctx context.Context, pool *pgxpool.Pool, st step, statements []string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var sourceBundleID int64
		var err error
		if st.kind == execWrite {
			err = tx.QueryRow(ctx, `SELECT sync.begin_server_bundle($1, $2)`, st.user, st.source).Scan(&sourceBundleID)
		} else {
			err = tx.QueryRow(ctx, `SELECT sync.begin_server_bundle($1, $2, $3)`, st.user, st.source, st.id).
				Scan(&sourceBundleID)
		}
		if err != nil {
			return err
		}
		if err := execAll(ctx, tx, statements); err != nil {
			return err
		}
		var seq, sbid, rows, bytes int64
		var source, hash string
		return tx.QueryRow(ctx, `SELECT bundle_seq, source_id, source_bundle_id, row_count, byte_count, bundle_hash
		                           FROM sync.commit_server_bundle()`).Scan(&seq, &source, &sbid, &rows, &bytes, &hash)
	})
}

func message(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}

var userPKField = regexp.MustCompile(`"user_pk":([0-9]+)`)

func printNotifications(ctx context.Context, pool *pgxpool.Pool, listener *pgx.Conn) error {
	users := map[string]string{}
	rows, err := pool.Query(ctx, `SELECT user_pk::text, user_id FROM sync.user_state`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var pk, id string
		if err := rows.Scan(&pk, &id); err != nil {
			return err
		}
		users[pk] = id
	}
	rows.Close()
	for {
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || wctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("WaitForNotification: %w", err)
		}
		payload := userPKField.ReplaceAllStringFunc(n.Payload, func(m string) string {
			pk := strings.TrimPrefix(m, `"user_pk":`)
			return `"user_pk":<` + users[pk] + `>`
		})
		fmt.Printf("notify: %s %s\n", n.Channel, payload)
	}
}
