//go:build oversyncd_compat_e2e

// Part of oversyncd's compatibility oracle (tests/compat/run-1f1118f.sh, docs/compatibility.md),
// not of go-oversync. The harness copies this file into the unpacked archive as
// examples/nethttp_server/server/zz_oversyncd_external_testserver.go and builds the oversqlite_e2e
// tests with -tags oversyncd_compat_e2e; with OVERSYNC_E2E_SERVER_URL set, they then get their
// *TestServer from NewExternalTestServer below instead of exampleserver.NewTestServer (see
// oversqlite_e2e/zz_oversyncd_external_server_test.go).
//
// It lives in this package only because the tests' type is *TestServer and two of its parts
// cannot be built elsewhere: Auth (an *exampleauth.TokenAuth, from an internal package) and
// FailureInjector (an unexported type). Nothing of the reference server runs: the shell holds
// the external server's URL, a token signer with that server's secret, a pool on its database,
// and a Go SyncService on that database for the tests' server-originated writes.
package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mobiletoly/go-oversync/examples/internal/exampleauth"
	"github.com/mobiletoly/go-oversync/oversync"
)

// NewExternalTestServer returns a TestServer that stands for a server running elsewhere:
// URL() is baseURL, GenerateToken signs HS256 tokens with jwtSecret like the reference
// (exampleauth), Pool and SyncService are the caller's (on the external server's database), and
// InjectFailure/InjectJSONFailure only record the failure: TakePendingFailures hands the records
// over, to be sent to the external server's test hook. Close closes the SyncService and the pool.
func NewExternalTestServer(baseURL, jwtSecret, businessSchema string, pool *pgxpool.Pool, syncService *oversync.SyncService, logger *slog.Logger) *TestServer {
	// An httptest.Server that never starts: TestServer.URL() reads its URL field and
	// TestServer.Close() closes it, so it must be a real one.
	placeholder := httptest.NewUnstartedServer(http.NotFoundHandler())
	placeholder.URL = baseURL
	return &TestServer{
		ServerComponents: &ServerComponents{
			Pool:            pool,
			SyncService:     syncService,
			Auth:            exampleauth.New(jwtSecret),
			Logger:          logger,
			BusinessSchema:  businessSchema,
			FailureInjector: &failureInjector{rules: make(map[string]*failureRule)},
		},
		HTTPServer: placeholder,
	}
}

// PendingFailure is one InjectFailure/InjectJSONFailure call, in the JSON form of the test hook
// POST /test/e2e/failures.
type PendingFailure struct {
	Endpoint   string          `json:"endpoint"`
	StatusCode int             `json:"status_code"`
	Count      int             `json:"count"`
	Body       json.RawMessage `json:"body,omitempty"`
}

// TakePendingFailures returns the failures recorded since the last call (one per endpoint, the
// latest, as the reference's injector keeps them) and forgets them. A call with count <= 0, which
// clears an endpoint's rule in the reference, only drops a rule not yet handed over; the tests
// of 1f1118f make no such call.
func (ts *TestServer) TakePendingFailures() []PendingFailure {
	if ts == nil || ts.ServerComponents == nil || ts.FailureInjector == nil {
		return nil
	}
	f := ts.FailureInjector
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []PendingFailure
	for endpoint, rule := range f.rules {
		out = append(out, PendingFailure{
			Endpoint:   endpoint,
			StatusCode: rule.statusCode,
			Count:      rule.remaining,
			Body:       append(json.RawMessage(nil), rule.body...),
		})
	}
	clear(f.rules)
	sort.Slice(out, func(i, j int) bool { return out[i].Endpoint < out[j].Endpoint })
	return out
}
