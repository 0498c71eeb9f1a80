package postgres

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/polls-tenants/polls/app/pgtest"
)

func TestEmbeddedMigrations(t *testing.T) {
	// Ensures the embedded migrations are numbered 1..LatestVersion.
	if len(migrations) != LatestVersion {
		t.Errorf("%d migrations, LatestVersion %d; want equal", len(migrations), LatestVersion)
	}
}

func TestLoadMigrationsRejectsBadSets(t *testing.T) {
	// Ensures gaps, duplicates and badly named files are caught.
	tests := map[string][]string{
		"gap":       {"migrations/0001_a.sql", "migrations/0003_c.sql"},
		"duplicate": {"migrations/0001_a.sql", "migrations/0001_b.sql"},
		"name":      {"migrations/first.sql"},
		"empty":     nil,
	}
	for name, files := range tests {
		fsys := fstest.MapFS{}
		for _, f := range files {
			fsys[f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
		}
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("%s: loadMigrations() succeeded; want error", name)
		}
	}
}

func TestMigrateFromEmptyThenNoop(t *testing.T) {
	// Ensures migrating an empty database applies every migration, leaves it
	// ready, and a second run applies nothing.
	ctx := context.Background()
	db := openDB(t, "migrate_empty")
	if err := db.Ready(ctx); err == nil {
		t.Fatal("Ready() before migrating = nil; want error")
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, LatestVersion)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(applied, want) {
		t.Errorf("first Migrate() applied %v; want %v", applied, want)
	}
	if err := db.Ready(ctx); err != nil {
		t.Errorf("Ready() after migrating = %v; want nil", err)
	}
	applied, err = db.Migrate(ctx)
	if err != nil || len(applied) != 0 {
		t.Errorf("second Migrate() = %v, %v; want nothing applied", applied, err)
	}
	assertSchema(t, db)
}

func TestConcurrentMigrations(t *testing.T) {
	// Ensures two migrations started together end in one correct schema,
	// with each migration applied exactly once.
	ctx := context.Background()
	// Each run gets its own pool, as two processes would.
	url := pgtest.Shared(t).CreateDatabase(t, "migrate_race")
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		dbs[i] = db
	}
	var wg sync.WaitGroup
	results := make([][]int, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			results[i], errs[i] = dbs[i].Migrate(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if total := len(results[0]) + len(results[1]); total != LatestVersion {
		t.Errorf("runs applied %v and %v; want %d migrations in all", results[0], results[1], LatestVersion)
	}
	assertSchema(t, dbs[0])
}

func TestMigrateRollsBackFailure(t *testing.T) {
	// Ensures a failing migration leaves neither its changes nor its record.
	ctx := context.Background()
	db := openDB(t, "migrate_fail")
	bad := append(slices.Clone(migrations), Migration{Version: LatestVersion + 1, Name: "broken", SQL: "CREATE TABLE t (x int); SELECT nope;"})
	if _, err := db.migrate(ctx, bad); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("migrate() = %v; want an error naming the broken migration", err)
	}
	if _, err := db.SchemaVersion(ctx); err == nil {
		t.Error("schema_migrations exists after a failed first migration; want it rolled back")
	}
}

// assertSchema checks that the schema is at LatestVersion with one row per
// migration and the tables the app uses.
func assertSchema(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	var rows, maxV int
	if err := db.pool.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&rows, &maxV); err != nil {
		t.Fatal(err)
	}
	if rows != LatestVersion || maxV != LatestVersion {
		t.Errorf("schema_migrations has %d rows, max %d; want %d, %d", rows, maxV, LatestVersion, LatestVersion)
	}
	for _, table := range []string{"polls", "choices", "users", "sessions"} {
		var ok bool
		if err := db.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s missing (%v)", table, err)
		}
	}
}
