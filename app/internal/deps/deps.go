// Package deps imports every package the polls binary imports from outside
// this module, the standard library's included. The Dockerfile compiles it
// in a layer of its own, before the app's sources are copied, so that a
// release recompiles only the app's own packages (seconds) rather than
// pgx, x/crypto and net/http all over again. TestCoversTheBinary keeps the
// list complete; a missing import only makes builds slower, never wrong.
package deps

import (
	_ "bytes"
	_ "context"
	_ "crypto/rand"
	_ "crypto/sha256"
	_ "embed"
	_ "encoding/base64"
	_ "errors"
	_ "flag"
	_ "fmt"
	_ "html/template"
	_ "io"
	_ "io/fs"
	_ "log/slog"
	_ "net"
	_ "net/http"
	_ "os"
	_ "os/signal"
	_ "path"
	_ "sort"
	_ "strconv"
	_ "strings"
	_ "sync"
	_ "syscall"
	_ "time"
	_ "unicode/utf8"

	_ "github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "golang.org/x/crypto/bcrypt"
)
