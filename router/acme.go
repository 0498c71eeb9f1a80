package router

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/nginx"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/spec"
)

// Engine is what the router asks the Docker engine itself: the
// certificate companion's status, read by running its status command in
// it (package dockerapi implements it).
type Engine interface {
	Exec(ctx context.Context, id string, cmd []string) (int, string, error)
}

// The certificate companion (ACME, with polls:acmeEmail).
//
// It is a container of the agent image, `polls-agent acme run`, beside the
// router: same code on one host and on Swarm, where the router runs on the
// manager. It joins the router's PID namespace (to see which user nginx's
// workers run as, who must read the keys) and its network namespace (to
// ask nginx itself, on its loopback, for a file of the webroot before each
// HTTP-01 order: the self-check, which spares the CA's failed-validation
// limits an order the router cannot answer yet), reads the hosts from the
// shared config's acme.hosts (so adding or removing a tenant changes
// nothing of the companion), answers HTTP-01 through a webroot the router
// serves and puts each host's certificate where nginx loads it at every
// handshake. Its state (account, keys, certificates, backoff, status) is
// on a volume kept on destroy, so nothing is ordered again needlessly.

// acmeNginx is the nginx side of the companion's live directory.
func acmeNginx(s spec.Stack) *nginx.ACME {
	return &nginx.ACME{CertDir: contract.ACMELiveDir + "/certs", Webroot: contract.ACMELiveDir + "/webroot", HTTPSPort: s.HTTPSPort}
}

// ACMEHostsFile renders acme.hosts: every host of every tenant, sorted.
func ACMEHostsFile(s spec.Stack) string {
	var b strings.Builder
	for _, h := range s.ACMEHosts() {
		fmt.Fprintf(&b, "%s %s\n", h.Host, h.Tenant)
	}
	return b.String()
}

// companionArgs is the companion's command line, environment and secret
// files for the stack's ACME settings.
func companionArgs(s spec.Stack) (cmd, env []string, files map[string]string) {
	a := s.ACME
	cmd = []string{"acme", "run",
		"--email", a.Email, "--directory", a.Directory, "--domain", s.Domain,
		"--renew-before", a.RenewBefore.String(),
		"--hosts", contract.RouterConfDir + "/" + contract.ACMEHostsFile,
		"--state", contract.ACMEStateDir, "--live", contract.ACMELiveDir,
		"--self-check", "http://127.0.0.1:" + listenHTTP,
	}
	files = map[string]string{}
	if a.CARoot != "" {
		path := contract.ACMESecretsDir + "/ca-root.pem"
		cmd = append(cmd, "--ca-root", path)
		files[path] = a.CARoot
	}
	if a.DNSProvider != "" {
		cmd = append(cmd, "--dns-provider", a.DNSProvider)
		if len(a.DNSResolvers) > 0 {
			cmd = append(cmd, "--dns-resolvers", strings.Join(a.DNSResolvers, ","))
		}
		keys := make([]string, 0, len(a.DNSCredentials))
		for k := range a.DNSCredentials {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			// lego reads VAR from the file VAR_FILE names: credentials
			// never show in the environment or `docker inspect`.
			path := contract.ACMESecretsDir + "/dns/" + k
			env = append(env, k+"_FILE="+path)
			files[path] = a.DNSCredentials[k]
		}
	}
	return cmd, env, files
}

// declareCompanion declares the companion's state volume and container.
func declareCompanion(ctx *pulumi.Context, name string, args Args, router *docker.Container, conf, live *docker.Volume, parent pulumi.ResourceOption) (*docker.Container, *docker.Volume, error) {
	state, err := docker.NewVolume(ctx, name+"-acme-state", &docker.VolumeArgs{
		Name: pulumi.String(args.Prefix + "-acme"),
		Labels: docker.VolumeLabelArray{
			docker.VolumeLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(args.Prefix)},
			docker.VolumeLabelArgs{Label: pulumi.String(contract.LabelRetained), Value: pulumi.String("true")},
		},
		// Kept on destroy and on turning ACME off: the account and the
		// certificates are reused by the next companion, so nothing is
		// ordered again into the CA's rate limits.
	}, parent, pulumi.RetainOnDelete(true))
	if err != nil {
		return nil, nil, fmt.Errorf("router: certificate state volume: %w", err)
	}
	cmd, env, files := companionArgs(args.Stack)
	uploads := docker.ContainerUploadArray{}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		content := pulumi.ToSecret(pulumi.String(files[p])).(pulumi.StringOutput)
		uploads = append(uploads, docker.ContainerUploadArgs{File: pulumi.String(p), Content: content})
	}
	c, err := docker.NewContainer(ctx, name+"-acme", &docker.ContainerArgs{
		Name:    pulumi.String(args.Prefix + "-acme"),
		Image:   args.AgentImage,
		Command: pulumi.ToStringArray(cmd),
		Envs:    pulumi.ToStringArray(env),
		Uploads: uploads,
		// Root: it writes keys owned by nginx's worker user.
		User:        pulumi.String("root"),
		PidMode:     pulumi.Sprintf("container:%s", router.ID()),
		NetworkMode: pulumi.Sprintf("container:%s", router.ID()),
		Mounts: docker.ContainerMountArray{
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: conf.Name, Target: pulumi.String(contract.RouterConfDir), ReadOnly: pulumi.Bool(true)},
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: live.Name, Target: pulumi.String(contract.ACMELiveDir)},
			docker.ContainerMountArgs{Type: pulumi.String("volume"), Source: state.Name, Target: pulumi.String(contract.ACMEStateDir)},
		},
		Restart: pulumi.String("unless-stopped"),
		Labels:  routerLabels(args.Prefix, "acme"),
	}, parent, platform.Named)
	if err != nil {
		return nil, nil, fmt.Errorf("router: certificate companion: %w", err)
	}
	return c, state, nil
}

// acmeStatus is the part of the companion's status.json the program reads.
type acmeStatus struct {
	Hosts []struct {
		Host         string    `json:"host"`
		Tenant       string    `json:"tenant"`
		State        string    `json:"state"`
		Serial       string    `json:"serial"`
		Error        string    `json:"error"`
		FailingSince time.Time `json:"failingSince"`
		Attempts     int       `json:"attempts"`
		NextAttempt  time.Time `json:"nextAttempt"`
	} `json:"hosts"`
}

// readACMEStatus runs the status command in the companion.
func readACMEStatus(ctx context.Context, engine Engine, companion string) (acmeStatus, error) {
	var st acmeStatus
	code, out, err := engine.Exec(ctx, companion, contract.ACMEStatusCommand)
	if err != nil {
		return st, err
	}
	if code != 0 {
		return st, fmt.Errorf("%s exited %d: %s", strings.Join(contract.ACMEStatusCommand, " "), code, out)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status of the certificate companion: %w", err)
	}
	return st, nil
}

// failing returns one line per failing host of st (only of tenants in
// only, when given): the host, its tenant, the CA's error and since when.
func (st acmeStatus) failing(only map[string]bool) []string {
	var lines []string
	for _, h := range st.Hosts {
		if h.Error == "" || (only != nil && !only[h.Tenant]) {
			continue
		}
		what := "has no certificate"
		if h.State == "valid" {
			what = "keeps its certificate (serial " + h.Serial + "), but its renewal fails"
		}
		lines = append(lines, fmt.Sprintf("tenant %s: host %s %s: failing since %s (%d attempts, next at %s): %s",
			h.Tenant, h.Host, what, h.FailingSince.UTC().Format(time.RFC3339), h.Attempts, h.NextAttempt.UTC().Format(time.RFC3339), h.Error))
	}
	return lines
}

// warnFailing logs a warning for each host the companion fails to keep a
// certificate for, as `pulumi preview` and `pulumi up` start; a companion
// not created yet is not an error.
func warnFailing(ctx *pulumi.Context, engine Engine, companion string) {
	if engine == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx.Context(), 10*time.Second)
	defer cancel()
	st, err := readACMEStatus(rctx, engine, companion)
	if err != nil {
		return
	}
	for _, line := range st.failing(nil) {
		_ = ctx.Log.Warn("certificates: "+line, nil)
	}
}

// certWait is how long `pulumi up` waits for a new tenant's certificates.
const certWait = 90 * time.Second

// awaitCertificates resolves once the companion serves a certificate for
// each of tenant's hosts or has failed its order (logged as a warning
// naming the host and the CA's error), or after certWait (a warning too).
// It never fails the update: the tenant serves over HTTP meanwhile.
func awaitCertificates(ctx *pulumi.Context, engine Engine, companion *docker.Container, name, tenant string, hosts []string, routed pulumi.StringOutput) pulumi.StringOutput {
	return pulumi.All(routed, companion.ID()).ApplyTWithContext(ctx.Context(), func(wctx context.Context, v []any) (string, error) {
		if ctx.DryRun() || engine == nil {
			return "certified", nil
		}
		id := fmt.Sprint(v[1])
		deadline := time.Now().Add(certWait)
		for {
			st, err := readACMEStatus(wctx, engine, id)
			if err == nil {
				// Done when every host is served or its order failed.
				settled := map[string]bool{}
				for _, h := range st.Hosts {
					settled[h.Host] = h.State == "valid" || h.Error != ""
				}
				all := true
				for _, h := range hosts {
					all = all && settled[h]
				}
				if all {
					for _, l := range st.failing(map[string]bool{tenant: true}) {
						_ = ctx.Log.Warn("certificates: "+l, &pulumi.LogArgs{Resource: companion})
					}
					return "certified", nil
				}
			}
			if time.Now().After(deadline) {
				_ = ctx.Log.Warn(fmt.Sprintf("certificates: tenant %s: no certificate for %s within %s; it serves over HTTP until one is issued (see `docker exec %s polls-agent acme status`)",
					tenant, strings.Join(hosts, ", "), certWait, name), &pulumi.LogArgs{Resource: companion})
				return "certified", nil
			}
			select {
			case <-wctx.Done():
				return "", wctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}).(pulumi.StringOutput)
}
