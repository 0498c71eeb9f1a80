package pgtest

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestCreateDatabase(t *testing.T) {
	// Ensures a created database accepts its owner's password over TCP and
	// belongs to that owner.
	url := Shared(t).CreateDatabase(t, "pgtest_owner")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var user, db string
	if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatal(err)
	}
	if user != "pgtest_owner" || db != "pgtest_owner" {
		t.Errorf("current_user, current_database() = %q, %q; want pgtest_owner twice", user, db)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Errorf("owner cannot create a table: %v", err)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	// Ensures the server checks passwords on TCP, as a real deployment does.
	srv := Shared(t)
	srv.CreateDatabase(t, "pgtest_pw")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "postgres://pgtest_pw:wrong@127.0.0.1:"+strconv.Itoa(srv.Port)+"/pgtest_pw?sslmode=disable")
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connect with a wrong password succeeded; want an error")
	}
}

func TestStartStop(t *testing.T) {
	// Ensures Start gives a private server whose directory is gone after Stop.
	srv := Start(t)
	if srv.Port == Shared(t).Port {
		t.Errorf("Start reused the shared server's port %d", srv.Port)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.dir); !os.IsNotExist(err) {
		t.Errorf("after Stop, stat %s = %v; want not exist", srv.dir, err)
	}
}
