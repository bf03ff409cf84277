// Command bootstrap drives the go-oversync library of commit 1f1118f against a database that
// tests/compat/check-bundle-schema.sh prepared: it is the other side of the byte-compatibility
// check of the bundle sidecar (docs/bundle-protocol.md). It is oversyncd's own test code; the
// library comes from the unpacked archive through a replace directive the script adds to go.mod,
// and nothing of go-oversync is part of this project.
//
//	bootstrap -db CONNINFO [-schema business] bootstrap
//	    NewRuntimeService + Bootstrap with the eight tables of the example server registered:
//	    creates the layout on an empty database, or adopts (validates) an existing one and
//	    reinstalls the triggers of the registered tables. Prints "bootstrap ok".
//	bootstrap -db CONNINFO [-schema business] write
//	    Bootstrap, then two ScopeManager.ExecWrite calls of fixed writes (the path a server-side
//	    writer takes): the library sets the bundle context, the trigger functions found in the
//	    database capture the effects, and the library turns them into bundles. Prints the
//	    bundles as JSON (nothing in them depends on the clock), so that two databases can be
//	    compared: one whose trigger functions oversyncd created, one whose the library created.
//
// Exit status 0 on success; 1 with the library's error on standard error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5"
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

// The writes of the "write" mode, two ExecWrite calls: the first creates rows (an insert then
// delete of one row vanishes from its bundle, a key changed in the same transaction is an
// insert of the new key), the second updates, re-keys and deletes committed rows (a key change
// is a delete plus an insert, an ON DELETE CASCADE is captured too). uuid keys, bytea, big and
// fractional numbers, timestamps given explicitly so that the payloads do not depend on the clock.
var writes = [][]string{{
	`INSERT INTO %[1]s.users (id, name, email, created_at, updated_at) VALUES
	   ('11111111-1111-4111-8111-111111111111', 'Ada', 'ada@example.com', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z'),
	   ('22222222-2222-4222-8222-222222222222', 'Bob', 'bob@example.com', '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z')`,
	`INSERT INTO %[1]s.posts (id, title, content, author_id, created_at, updated_at) VALUES
	   ('33333333-3333-4333-8333-333333333333', 'Hello', 'First post', '11111111-1111-4111-8111-111111111111',
	    '2026-01-02T03:04:05Z', '2026-01-02T03:04:05Z')`,
	`UPDATE %[1]s.users SET name = 'Ada Lovelace' WHERE id = '11111111-1111-4111-8111-111111111111'`,
	`UPDATE %[1]s.users SET id = '44444444-4444-4444-8444-444444444444' WHERE id = '22222222-2222-4222-8222-222222222222'`,
	`INSERT INTO %[1]s.files (id, name, data) VALUES ('55555555-5555-4555-8555-555555555555', 'blob', '\x0001ff')`,
	`INSERT INTO %[1]s.file_reviews (id, review, file_id) VALUES
	   ('66666666-6666-4666-8666-666666666666', 'fine', '55555555-5555-4555-8555-555555555555')`,
	`INSERT INTO %[1]s.typed_rows (id, name, note, count_value, enabled_flag, rating, data, created_at) VALUES
	   ('77777777-7777-4777-8777-777777777777', 'typed', NULL, 9007199254740993, 1, 0.1, '\x00', '2026-03-22T12:00:00.5Z')`,
	`INSERT INTO %[1]s.categories (id, name) VALUES ('88888888-8888-4888-8888-888888888888', 'gone')`,
	`DELETE FROM %[1]s.categories WHERE id = '88888888-8888-4888-8888-888888888888'`,
}, {
	`UPDATE %[1]s.users SET email = 'ada@lovelace.example' WHERE id = '11111111-1111-4111-8111-111111111111'`,
	`UPDATE %[1]s.users SET id = '99999999-9999-4999-8999-999999999999' WHERE id = '44444444-4444-4444-8444-444444444444'`,
	`DELETE FROM %[1]s.posts WHERE id = '33333333-3333-4333-8333-333333333333'`,
	`DELETE FROM %[1]s.files WHERE id = '55555555-5555-4555-8555-555555555555'`,
	`UPDATE %[1]s.typed_rows SET rating = -2.5e-7, note = 'n' WHERE id = '77777777-7777-4777-8777-777777777777'`,
}}

func main() {
	db := flag.String("db", "", "libpq connection string of the database")
	schema := flag.String("schema", "business", "schema of the example tables")
	flag.Parse()
	if *db == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: bootstrap -db CONNINFO [-schema NAME] bootstrap|write")
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

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := oversync.NewRuntimeService(pool, &oversync.ServiceConfig{
		MaxSupportedSchemaVersion: 1,
		AppName:                   "oversyncd-compat",
		RegisteredTables:          registered(schema),
	}, logger)
	if err != nil {
		return fmt.Errorf("NewRuntimeService: %w", err)
	}
	if err := svc.Bootstrap(ctx); err != nil {
		return fmt.Errorf("Bootstrap: %w", err)
	}
	switch mode {
	case "bootstrap":
		fmt.Println("bootstrap ok")
		return nil
	case "write":
		return write(ctx, svc, schema)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
}

func write(ctx context.Context, svc *oversync.SyncService, schema string) error {
	manager := oversync.NewScopeManager(svc, oversync.ScopeManagerConfig{})
	bundles := make([]*oversync.Bundle, 0, len(writes))
	for _, batch := range writes {
		res, err := manager.ExecWrite(ctx, "compat-user", oversync.ScopeWriteOptions{WriterID: "compat-writer"},
			func(tx pgx.Tx) error {
				for _, w := range batch {
					if _, err := tx.Exec(ctx, fmt.Sprintf(w, pgx.Identifier{schema}.Sanitize())); err != nil {
						return fmt.Errorf("%s: %w", w, err)
					}
				}
				return nil
			})
		if err != nil {
			return fmt.Errorf("ExecWrite: %w", err)
		}
		bundles = append(bundles, res.Bundle)
	}
	out, err := json.MarshalIndent(bundles, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
