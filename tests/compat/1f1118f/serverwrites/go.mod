module oversyncd.invalid/compat/serverwrites

go 1.25.0

require (
	github.com/jackc/pgx/v5 v5.9.1
	github.com/mobiletoly/go-oversync v0.0.0
)

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.2 // indirect
	golang.org/x/sync v0.20.0 // indirect
	golang.org/x/text v0.35.0 // indirect
)

// tests/compat/check-server-writes.sh points this at the unpacked archive of 1f1118f.
replace github.com/mobiletoly/go-oversync => ../go-oversync
