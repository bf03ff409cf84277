// refserver: the reference example server of go-oversync 1f1118f with the test hook of
// docs/compatibility.md ("The e2e test hook"), for tests/compat/run-1f1118f.sh --server reference.
//
// It serves exactly the HTTP API of the reference examples/nethttp_server, built by that
// example's own package (examples/nethttp_server/server, imported unchanged from the unpacked
// archive through go.mod's replace directive), and adds two test-only routes:
//
//	POST /test/e2e/setup     drop every non-system schema, create the example tables in the
//	                         requested business schema, register them, bootstrap the sync schema,
//	                         and apply the per-test settings (initialization lease TTL, empty-first
//	                         deferral); the API then serves that schema's tables
//	POST /test/e2e/failures  answer the next N requests of one endpoint with a given status and body
//
// so that the oversqlite_e2e tests, built with the shim of ../e2e-shim, can run against it as an
// external server exactly as they run against the in-process one. Each setup builds the server
// the way the tests' own harness does in process: exampleserver.NewTestServer with the test's
// ServerConfig. Nothing of go-oversync is copied here.
//
// Usage: refserver [-listen 127.0.0.1:0] [-url-file FILE]
// Environment: DATABASE_URL (required), JWT_SECRET (default: the reference's default secret).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	exampleserver "github.com/mobiletoly/go-oversync/examples/nethttp_server/server"
)

// The endpoint names of the reference's failure injection (exampleserver.FailureEndpoint*).
var failureEndpoints = map[string]bool{
	exampleserver.FailureEndpointConnect:             true,
	exampleserver.FailureEndpointPushSessionCreate:   true,
	exampleserver.FailureEndpointPushSessionChunk:    true,
	exampleserver.FailureEndpointPushSessionCommit:   true,
	exampleserver.FailureEndpointPull:                true,
	exampleserver.FailureEndpointSnapshotCreate:      true,
	exampleserver.FailureEndpointSnapshotChunk:       true,
	exampleserver.FailureEndpointCapabilities:        true,
	exampleserver.FailureEndpointCommittedBundleRows: true,
}

type setupRequest struct {
	BusinessSchema           string `json:"business_schema"`
	AppName                  string `json:"app_name"`
	InitializationLeaseTTLMS int64  `json:"initialization_lease_ttl_ms"`
	EmptyFirstDeferral       bool   `json:"empty_first_deferral"`
	EmptyFirstDeferralMS     int64  `json:"empty_first_deferral_ms"`
}

type failureRequest struct {
	Endpoint   string          `json:"endpoint"`
	StatusCode int             `json:"status_code"`
	Count      int             `json:"count"`
	Body       json.RawMessage `json:"body"`
}

type wrapper struct {
	databaseURL string
	jwtSecret   string
	logger      *slog.Logger

	mu      sync.Mutex // serialises setups
	current atomic.Pointer[exampleserver.TestServer]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"error": code, "message": message})
}

// dropNonSystemSchemas does what oversqlite_e2e's resetSharedExampleDatabase does to its database
// before each test: every schema but the system ones and public goes, the sync schema included.
func dropNonSystemSchemas(ctx context.Context, databaseURL string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT nspname FROM pg_namespace
		WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
		  AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp_%'
		ORDER BY nspname`)
	if err != nil {
		return err
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, s := range schemas {
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{s}.Sanitize()+` CASCADE`); err != nil {
			return fmt.Errorf("drop schema %s: %w", s, err)
		}
	}
	return nil
}

// install replaces the running reference server by a fresh one built from req, as the tests'
// in-process harness does (newExampleServerWithConfig: reset the database, NewTestServer).
func (wr *wrapper) install(ctx context.Context, req setupRequest, dropAll bool) (*exampleserver.TestServer, error) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if old := wr.current.Swap(nil); old != nil {
		old.Close()
	}
	if dropAll {
		if err := dropNonSystemSchemas(ctx, wr.databaseURL); err != nil {
			return nil, fmt.Errorf("reset database: %w", err)
		}
	}
	cfg := &exampleserver.ServerConfig{
		DatabaseURL:    wr.databaseURL,
		JWTSecret:      wr.jwtSecret,
		Logger:         wr.logger,
		AppName:        req.AppName,
		BusinessSchema: req.BusinessSchema,
	}
	if req.InitializationLeaseTTLMS > 0 {
		cfg.InitializationLeaseTTL = time.Duration(req.InitializationLeaseTTLMS) * time.Millisecond
	}
	if req.EmptyFirstDeferral {
		cfg.EnableEmptyFirstDeferral = true
		cfg.EmptyFirstDeferralDuration = time.Duration(req.EmptyFirstDeferralMS) * time.Millisecond
	}
	ts, err := exampleserver.NewTestServer(cfg)
	if err != nil {
		return nil, err
	}
	// NewTestServer also listens on a port of its own (httptest): this process serves the
	// handler on its own listener instead.
	ts.HTTPServer.Close()
	wr.current.Store(ts)
	return ts, nil
}

func (wr *wrapper) handleSetup(w http.ResponseWriter, r *http.Request) {
	var req setupRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid JSON: "+err.Error())
		return
	}
	req.BusinessSchema = strings.TrimSpace(req.BusinessSchema)
	if req.BusinessSchema == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "business_schema required")
		return
	}
	if req.InitializationLeaseTTLMS < 0 || req.EmptyFirstDeferralMS < 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "durations must be non-negative")
		return
	}
	if strings.TrimSpace(req.AppName) == "" {
		req.AppName = "oversqlite-end-to-end"
	}
	if _, err := wr.install(r.Context(), req, true); err != nil {
		wr.logger.Error("e2e setup failed", "error", err, "business_schema", req.BusinessSchema)
		writeError(w, http.StatusInternalServerError, "setup_failed", err.Error())
		return
	}
	var tables []string
	for _, t := range exampleserver.RegisteredTablesForBusinessSchema(req.BusinessSchema) {
		tables = append(tables, t.Schema+"."+t.Table)
	}
	sort.Strings(tables)
	writeJSON(w, http.StatusOK, map[string]any{
		"status":            "ok",
		"business_schema":   req.BusinessSchema,
		"registered_tables": tables,
	})
}

func (wr *wrapper) handleFailures(w http.ResponseWriter, r *http.Request) {
	var req failureRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid JSON: "+err.Error())
		return
	}
	if !failureEndpoints[req.Endpoint] {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("unknown endpoint %q", req.Endpoint))
		return
	}
	if req.Count > 0 && (req.StatusCode < 100 || req.StatusCode > 599) {
		writeError(w, http.StatusBadRequest, "invalid_request", "status_code must be 100-599")
		return
	}
	ts := wr.current.Load()
	if ts == nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "no server is set up")
		return
	}
	if len(req.Body) == 0 || string(req.Body) == "null" {
		ts.InjectFailure(req.Endpoint, req.StatusCode, req.Count)
	} else {
		ts.InjectJSONFailure(req.Endpoint, req.StatusCode, req.Count, req.Body)
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "endpoint": req.Endpoint, "count": max(req.Count, 0)})
}

func (wr *wrapper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/test/e2e/setup", "/test/e2e/failures":
		if r.Method != http.MethodPost {
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == "/test/e2e/setup" {
			wr.handleSetup(w, r)
		} else {
			wr.handleFailures(w, r)
		}
		return
	}
	ts := wr.current.Load()
	if ts == nil {
		writeError(w, http.StatusServiceUnavailable, "service_unavailable", "the server is being set up")
		return
	}
	ts.Handler.ServeHTTP(w, r)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	urlFile := flag.String("url-file", "", "write the server's base URL to this file once it listens")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	wr := &wrapper{
		databaseURL: os.Getenv("DATABASE_URL"),
		jwtSecret:   os.Getenv("JWT_SECRET"),
		logger:      logger,
	}
	if wr.databaseURL == "" {
		log.Fatal("DATABASE_URL is required")
	}
	if wr.jwtSecret == "" {
		wr.jwtSecret = "your-secret-key-change-in-production"
	}
	// Until the first setup: the example server on schema business, as examples/nethttp_server
	// serves it (on a reset database, as NewTestServer leaves it).
	if _, err := wr.install(context.Background(), setupRequest{BusinessSchema: "business", AppName: "nethttp-server-example"}, false); err != nil {
		log.Fatalf("cannot set up the reference server: %v", err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	base := "http://" + ln.Addr().String()
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile+".tmp", []byte(base+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*urlFile+".tmp", *urlFile); err != nil {
			log.Fatal(err)
		}
	}
	srv := &http.Server{Handler: wr, ReadTimeout: 120 * time.Second, WriteTimeout: 120 * time.Second, IdleTimeout: 60 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("serve: %v", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "refserver: listening on %s\n", base)

	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGINT, syscall.SIGTERM)
	<-quit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if ts := wr.current.Load(); ts != nil {
		ts.Close()
	}
}
