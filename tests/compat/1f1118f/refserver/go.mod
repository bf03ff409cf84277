// Our wrapper around the reference example server (see main.go). The harness points the replace
// directive at the unpacked go-oversync-1f1118f archive and takes go.sum from it.
module oversyncd.invalid/compat/refserver

go 1.25.0

require (
	github.com/jackc/pgx/v5 v5.9.1
	github.com/mobiletoly/go-oversync v0.0.0-00010101000000-000000000000
)

require (
	github.com/golang-jwt/jwt/v5 v5.3.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.2 // indirect
	golang.org/x/sync v0.20.0 // indirect
	golang.org/x/text v0.35.0 // indirect
)

replace github.com/mobiletoly/go-oversync => ../go-oversync
