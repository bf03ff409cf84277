//go:build oversyncd_compat_e2e

// Part of oversyncd's compatibility oracle (tests/compat/run-1f1118f.sh, docs/compatibility.md),
// not of go-oversync. The harness copies this file into the unpacked archive as
// oversqlite_e2e/zz_oversyncd_external_server_test.go, renames the archive's own
// newExampleServerWithConfig (oversqlite_e2e/helpers_test.go) to
// newExampleServerWithConfigInProcess, and builds the tests with -tags oversyncd_compat_e2e.
// The tests themselves and the client library are unchanged.
//
// Without OVERSYNC_E2E_SERVER_URL every test runs as upstream: against the reference server
// started in process. With it, every test talks to that external server instead:
//
//	OVERSYNC_E2E_SERVER_URL    base URL of the server under test (http://127.0.0.1:PORT)
//	OVERSYNC_E2E_DATABASE_URL  its PostgreSQL database (else TEST_DATABASE_URL): the tests read
//	                           sync.* and business rows there directly, as they do in process
//	OVERSYNC_E2E_JWT_SECRET    its HS256 secret (else the tests' own, oversqlite-end-to-end-secret)
//
// Per test, the server is prepared through its test hook (docs/compatibility.md, "The e2e test
// hook"): POST /test/e2e/setup with the test's business schema and the ServerConfig settings the
// test asks for (initialization lease TTL, empty-first deferral); failures the test injects with
// InjectFailure are sent to POST /test/e2e/failures before the next request reaches the server.
package oversqlite_e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	exampleserver "github.com/mobiletoly/go-oversync/examples/nethttp_server/server"
	"github.com/mobiletoly/go-oversync/oversync"
	"github.com/stretchr/testify/require"
)

var (
	externalServerURL = strings.TrimRight(strings.TrimSpace(os.Getenv("OVERSYNC_E2E_SERVER_URL")), "/")
	// The server whose injected failures go out before each request (tests run one at a time).
	externalCurrent atomic.Pointer[exampleserver.TestServer]
	// The transport the process had; hook calls use it directly.
	externalBaseTransport = http.DefaultTransport
)

func init() {
	if externalServerURL == "" {
		return
	}
	// The tests build their clients (and their wrapping round-trippers) on http.DefaultTransport:
	// every request to the server passes here first.
	http.DefaultTransport = failureForwardingTransport{base: externalBaseTransport}
}

func newExampleServerWithConfig(
	t *testing.T,
	schema string,
	configure func(*exampleserver.ServerConfig),
) *exampleserver.TestServer {
	t.Helper()
	if externalServerURL == "" {
		return newExampleServerWithConfigInProcess(t, schema, configure)
	}
	return newExternalExampleServer(t, schema, configure)
}

func newExternalExampleServer(
	t *testing.T,
	schema string,
	configure func(*exampleserver.ServerConfig),
) *exampleserver.TestServer {
	t.Helper()

	// The settings the test asks of its server, on the defaults of the in-process harness.
	cfg := &exampleserver.ServerConfig{
		JWTSecret:      "oversqlite-end-to-end-secret",
		Logger:         slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		AppName:        "oversqlite-end-to-end",
		BusinessSchema: schema,
	}
	if configure != nil {
		configure(cfg)
	}
	secret := os.Getenv("OVERSYNC_E2E_JWT_SECRET")
	if secret == "" {
		secret = cfg.JWTSecret
	}
	databaseURL := os.Getenv("OVERSYNC_E2E_DATABASE_URL")
	if databaseURL == "" {
		databaseURL = integrationTestDatabaseURL()
	}

	setup := map[string]any{
		"business_schema":             schema,
		"app_name":                    cfg.AppName,
		"initialization_lease_ttl_ms": cfg.InitializationLeaseTTL.Milliseconds(),
		"empty_first_deferral":        cfg.EnableEmptyFirstDeferral,
		"empty_first_deferral_ms":     cfg.EmptyFirstDeferralDuration.Milliseconds(),
	}
	require.NoError(t, postTestHook("/test/e2e/setup", setup), "test hook of the server under test")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, databaseURL)
	require.NoError(t, err)
	require.NoError(t, pool.Ping(ctx))

	// For the tests' server-originated writes (SyncService.WithinSyncBundle): the Go library on
	// the server's database, as examples/mobile_flow's watch-server-originated scenario uses it.
	syncService, err := oversync.NewRuntimeService(pool, &oversync.ServiceConfig{
		MaxSupportedSchemaVersion: 1,
		AppName:                   cfg.AppName,
		RegisteredTables:          exampleserver.RegisteredTablesForBusinessSchema(schema),
		InitializationLeaseTTL:    cfg.InitializationLeaseTTL,
	}, cfg.Logger)
	if err != nil {
		pool.Close()
		require.NoError(t, err)
	}
	if err := syncService.Bootstrap(ctx); err != nil {
		_ = syncService.Close(context.Background())
		pool.Close()
		require.NoError(t, err, "bootstrapping the Go sync library on the server's database")
	}

	ts := exampleserver.NewExternalTestServer(externalServerURL, secret, schema, pool, syncService, cfg.Logger)
	externalCurrent.Store(ts)
	t.Cleanup(func() {
		externalCurrent.CompareAndSwap(ts, nil)
		ts.Close()
	})
	return ts
}

// postTestHook POSTs body as JSON to the external server's test hook and wants 200.
func postTestHook(path string, body any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, externalServerURL+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: externalBaseTransport, Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(answer)))
	}
	return nil
}

type failureForwardingTransport struct {
	base http.RoundTripper
}

func (f failureForwardingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if ts := externalCurrent.Load(); ts != nil && sameServer(r.URL) {
		for _, failure := range ts.TakePendingFailures() {
			if err := postTestHook("/test/e2e/failures", failure); err != nil {
				return nil, fmt.Errorf("forwarding an injected failure to the server under test: %w", err)
			}
		}
	}
	return f.base.RoundTrip(r)
}

// CloseIdleConnections keeps what httptest.Server.Close asks of http.DefaultTransport.
func (f failureForwardingTransport) CloseIdleConnections() {
	if c, ok := f.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func sameServer(u *url.URL) bool {
	base, err := url.Parse(externalServerURL)
	return err == nil && u != nil && strings.EqualFold(u.Host, base.Host)
}
