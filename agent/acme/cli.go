// Package acme is the router's certificate companion: `polls-agent acme
// run` issues and renews a certificate for every host the router serves,
// with lego (HTTP-01 through a webroot the router serves, and DNS-01 for
// the domain's wildcard with a lego DNS provider), keeps the ACME account,
// keys, certificates and per-host status in a state directory that
// outlives the router, and publishes certificates where nginx loads them
// at each handshake.
//
//	polls-agent acme run [flags]          the companion itself
//	polls-agent acme status [--json]      every host: state, serial, expiry,
//	                                      and the CA's error since when
//	polls-agent acme renew HOST...        renew now (skipping any backoff)
//	                                      and wait for the new serial
//	polls-agent acme providers            the DNS providers built in
package acme

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Default paths inside the companion's container.
const (
	DefaultState = "/var/lib/polls-acme/state"
	DefaultLive  = "/var/lib/polls-acme/live"
	DefaultHosts = "/etc/nginx/conf.d/acme.hosts"
)

const usage = "usage: polls-agent acme run [flags] | status [--json] | renew HOST... | providers"

// Main runs `polls-agent acme ARGS...`.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "run":
		return run(ctx, args[1:])
	case "status":
		return status(args[1:], stdout)
	case "renew":
		return renew(ctx, args[1:], stdout)
	case "providers":
		fmt.Fprintln(stdout, strings.Join(Providers(), "\n"))
		return nil
	}
	return fmt.Errorf("acme: unknown subcommand %q; %s", args[0], usage)
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("acme run", flag.ContinueOnError)
	var cfg Config
	var resolvers string
	fs.StringVar(&cfg.Email, "email", "", "ACME account contact")
	fs.StringVar(&cfg.Directory, "directory", "", "ACME directory URL")
	fs.StringVar(&cfg.CARoot, "ca-root", "", "PEM file of extra roots for the ACME server's HTTPS")
	fs.StringVar(&cfg.DNSProvider, "dns-provider", "", "lego DNS provider code for the wildcard (credentials from the environment)")
	fs.StringVar(&resolvers, "dns-resolvers", "", "comma-separated host:port DNS servers that check DNS-01 records")
	fs.StringVar(&cfg.Domain, "domain", "", "the stack's domain (its wildcard is issued by DNS-01)")
	fs.DurationVar(&cfg.RenewBefore, "renew-before", 30*24*time.Hour, "renew this long before expiry")
	fs.StringVar(&cfg.HostsFile, "hosts", DefaultHosts, "the router's hosts file")
	fs.StringVar(&cfg.State, "state", DefaultState, "state directory")
	fs.StringVar(&cfg.Live, "live", DefaultLive, "directory shared with the router")
	fs.StringVar(&cfg.Proc, "proc", "/proc", "where nginx's worker processes are visible")
	fs.StringVar(&cfg.SelfCheck, "self-check", "", "the router's plain HTTP URL (http://127.0.0.1:80 in its network namespace): an HTTP-01 order waits until the router serves the webroot there")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "how often to read the hosts file")
	fs.IntVar(&cfg.Concurrency, "concurrency", 4, "orders at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if resolvers != "" {
		cfg.DNSResolvers = strings.Split(resolvers, ",")
	}
	var missing []string
	for flagName, v := range map[string]string{"email": cfg.Email, "directory": cfg.Directory, "domain": cfg.Domain} {
		if v == "" {
			missing = append(missing, "--"+flagName)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("acme run: missing %s", strings.Join(missing, ", "))
	}
	if cfg.DNSProvider != "" {
		if _, ok := dnsProviders[cfg.DNSProvider]; !ok {
			return fmt.Errorf("acme run: DNS provider %q is not built in; see `polls-agent acme providers`", cfg.DNSProvider)
		}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	slog.Info("certificate companion started", "directory", cfg.Directory, "domain", cfg.Domain, "dnsProvider", cfg.DNSProvider, "renewBefore", cfg.RenewBefore)
	return newDaemon(cfg).Run(ctx)
}

func status(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("acme status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print status.json")
	dir := fs.String("state", DefaultState, "state directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := Store{Dir: *dir}.LoadStatus()
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	return PrintStatus(stdout, st)
}

// PrintStatus writes the hosts as a table, then each failing host's
// error in full.
func PrintStatus(w io.Writer, st Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tTENANT\tSTATE\tCHALLENGE\tSERIAL\tEXPIRES\tRENEWS")
	for _, h := range st.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, h.Tenant, h.State, h.Challenge, orDash(h.Serial), day(h.NotAfter), day(h.RenewAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, h := range st.Hosts {
		if h.Error != "" {
			fmt.Fprintf(w, "\n%s: failing since %s (%d attempts, next %s): %s\n", h.Host,
				h.FailingSince.UTC().Format(time.RFC3339), h.Attempts, h.NextAttempt.UTC().Format(time.RFC3339), h.Error)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func day(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

// renew asks the running companion to renew the certificates serving the
// hosts and waits until each serves a new serial, or its order fails.
func renew(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("acme renew", flag.ContinueOnError)
	dir := fs.String("state", DefaultState, "state directory")
	wait := fs.Duration("wait", 3*time.Minute, "how long to wait for the new certificates")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("acme renew: name the hosts to renew")
	}
	store := Store{Dir: *dir}
	st, err := store.LoadStatus()
	if err != nil {
		return err
	}
	type pending struct{ host, cert, serial string }
	var todo []pending
	for _, host := range fs.Args() {
		var found *HostStatus
		for i := range st.Hosts {
			if st.Hosts[i].Host == host {
				found = &st.Hosts[i]
			}
		}
		if found == nil {
			return fmt.Errorf("acme renew: %s is not a host the router serves", host)
		}
		if err := store.RequestRenewal(found.Certificate); err != nil {
			return err
		}
		todo = append(todo, pending{host, found.Certificate, found.Serial})
	}
	started := time.Now()
	deadline := started.Add(*wait)
	for len(todo) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		now, err := store.LoadStatus()
		if err != nil {
			continue
		}
		var left []pending
		for _, p := range todo {
			var h *HostStatus
			for i := range now.Hosts {
				if now.Hosts[i].Host == p.host {
					h = &now.Hosts[i]
				}
			}
			rec := now.Records[p.cert]
			switch {
			case h != nil && h.Serial != "" && h.Serial != p.serial:
				fmt.Fprintf(stdout, "%s: renewed, serial %s (was %s), expires %s\n", p.host, h.Serial, orDash(p.serial), h.NotAfter.UTC().Format(time.RFC3339))
			case rec.Attempts > 0 && !rec.LastAttempt.Before(started):
				return fmt.Errorf("acme renew: %s: the order failed: %s", p.host, rec.LastError)
			default:
				left = append(left, p)
			}
		}
		todo = left
		if len(todo) > 0 && time.Now().After(deadline) {
			if rec := now.Records[todo[0].cert]; rec.SelfChecks > 0 && !rec.LastAttempt.Before(started) {
				return fmt.Errorf("acme renew: %s not renewed within %s: %s", todo[0].host, *wait, rec.LastError)
			}
			return fmt.Errorf("acme renew: %s not renewed within %s: is the companion running?", todo[0].host, *wait)
		}
	}
	return nil
}
