package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// Usage lists the backup subcommands.
const Usage = `polls-agent backup agent            run the tenant's backup agent
polls-agent backup status [--json]  its last base backup, last archived log, problems
polls-agent backup check            exit 1 naming what is late or failing
polls-agent backup backups          the generations the repository holds, as JSON
polls-agent backup now              take a base backup now and wait for it
polls-agent backup drill [--json]   restore the latest backup into a scratch database and compare`

// Main runs a backup subcommand; stdout gets its output.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("no backup subcommand given:\n" + Usage)
	}
	json := len(args) > 1 && args[1] == "--json"
	switch args[0] {
	case "agent":
		cfg, err := LoadConfig(ConfigFile)
		if err != nil {
			return err
		}
		log := slog.New(slog.NewJSONHandler(stdout, nil)).With("tenant", cfg.Tenant)
		a, err := New(cfg, SpoolDir, log)
		if err != nil {
			return err
		}
		a.slots = slotsFor(SlotsDir)
		return a.Run(ctx)
	case "status":
		s, err := LoadState(StateFile)
		if err != nil {
			return fmt.Errorf("no state yet (is the agent running?): %w", err)
		}
		if json {
			return writeIndented(stdout, s)
		}
		_, err = io.WriteString(stdout, s.Summary(time.Now().UTC()))
		return err
	case "check":
		s, err := LoadState(StateFile)
		if err != nil {
			return fmt.Errorf("no state yet: %w", err)
		}
		if problems := Check(s, time.Now().UTC(), DefaultLimits); len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
		fmt.Fprintln(stdout, "backups ok")
		return nil
	case "backups":
		return local(ctx, http.MethodGet, "/backups", stdout)
	case "now":
		return local(ctx, http.MethodPost, "/backup", stdout)
	case "drill":
		cfg, err := LoadConfig(ConfigFile)
		if err != nil {
			return err
		}
		db, err := NewDB(cfg.Database, cfg.User, cfg.PasswordFile, os.TempDir())
		if err != nil {
			return err
		}
		d, err := RunDrill(ctx, cfg, db, "http://127.0.0.1"+listenPort(cfg.Listen), os.TempDir(), cfg.DBName)
		if err != nil {
			return err
		}
		if json {
			return writeIndented(stdout, d)
		}
		d.Report(stdout)
		return nil
	default:
		return fmt.Errorf("unknown backup subcommand %q:\n%s", args[0], Usage)
	}
}

// local calls the running agent from inside its container.
func local(ctx context.Context, method, path string, stdout io.Writer) error {
	cfg, err := LoadConfig(ConfigFile)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://127.0.0.1"+listenPort(cfg.Listen)+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 2 * time.Hour}).Do(req)
	if err != nil {
		return fmt.Errorf("the agent does not answer: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	_, err = stdout.Write(b)
	return err
}

// listenPort is ":port" of a listen address.
func listenPort(listen string) string {
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		return listen[i:]
	}
	return ":7070"
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
