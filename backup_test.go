package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
	"github.com/polls-tenants/polls/internal/fakes"
	"github.com/polls-tenants/polls/spec"
)

// withAgent gives the mock engine thor's running backup agent, whose
// backups restore to any moment of 2026-11-01.
func withAgent(m *mocks, dbRestore string) {
	m.ContainerList = []dockerapi.ContainerSummary{
		{ID: "thor-agent", Name: "polls-dev-thor-backup", State: "running",
			Labels: map[string]string{contract.LabelStack: "polls-dev", contract.LabelTenant: "thor", contract.LabelRole: "backup"}},
		{ID: "thor-db-c", Name: "polls-dev-thor-db", State: "running",
			Labels: map[string]string{contract.LabelStack: "polls-dev", contract.LabelTenant: "thor", contract.LabelRole: "db", "polls.restore": dbRestore}},
	}
	m.ExecOut = map[string]string{"thor-agent": `{"generations":[{"id":"g1","from":"2026-11-01T00:10:00Z","to":"2026-11-01T23:50:00Z"}],"caughtUp":"2026-11-01T23:50:00Z"}`}
}

// TestRestoreChecked ensures a restore to a moment no backup covers is
// refused, naming the tenant's key and the bounds, before anything is
// registered.
func TestRestoreChecked(t *testing.T) {
	tests := []struct{ restore, want string }{
		{"2026-10-31T12:00:00Z", "polls:tenants.thor.restore: 2026-10-31T12:00:00Z is before the oldest backup of thor, which restores to 2026-11-01T00:10:00Z at the earliest"},
		{"2026-11-02T06:00:00Z", "polls:tenants.thor.restore: 2026-11-02T06:00:00Z is after the newest archived log of thor (2026-11-01T23:50:00Z)"},
	}
	for _, tt := range tests {
		m := newMocks()
		withAgent(m, "")
		err := run(t, m, map[string]string{"tenants": `{"thor":{"restore":"` + tt.restore + `"}}`})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("restore %s: error %v; want %q", tt.restore, err, tt.want)
		}
		counts := m.CountByType()
		delete(counts, "pulumi:pulumi:Stack")
		if len(counts) != 0 {
			t.Errorf("restore %s: resources registered despite the refusal: %v", tt.restore, counts)
		}
	}
	m := newMocks()
	withAgent(m, "")
	m.ExecOut["thor-agent"] = `{"generations":[]}`
	if err := run(t, m, map[string]string{"tenants": `{"thor":{"restore":"latest"}}`}); err == nil || !strings.Contains(err.Error(), "tenant thor has no backup yet") {
		t.Errorf("restore of a tenant with no backup: %v; want refused", err)
	}
}

// TestRestorePending ensures a restore not yet applied backs the current
// state up first, then asks the database for it (a request file that names
// it, a label that replaces the database and re-runs the migration), and
// that once applied it is not asked for again.
func TestRestorePending(t *testing.T) {
	cfg := map[string]string{"tenants": `{"thor":{"restore":"2026-11-01T12:00:00Z"}}`}
	id := contract.RestoreID("thor", "", "2026-11-01T12:00:00Z")
	m := newMocks()
	withAgent(m, "")
	if err := run(t, m, cfg); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Execs, "\n"); !strings.Contains(got, "thor-agent: polls-agent backup now") {
		t.Errorf("commands run in the agent:\n%s\nwant a base backup before the restore", got)
	}
	db := m.All()["docker:index/container:Container::thor-db"]
	var request contract.RestoreRequest
	for _, u := range db["uploads"].ArrayValue() {
		if u.ObjectValue()["file"].StringValue() == contract.RestoreRequestFile {
			_ = json.Unmarshal([]byte(u.ObjectValue()["content"].StringValue()), &request)
		}
	}
	if request.ID != id || request.To != "2026-11-01T12:00:00Z" {
		t.Errorf("the database's restore request = %+v; want id %s to 2026-11-01T12:00:00Z", request, id)
	}
	for _, c := range []string{"thor-db", "thor-migrate"} {
		if !strings.Contains(m.All()["docker:index/container:Container::"+c]["labels"].String(), id) {
			t.Errorf("%s does not carry the restore's label %s", c, id)
		}
	}

	applied := newMocks()
	withAgent(applied, id)
	if err := run(t, applied, cfg); err != nil {
		t.Fatal(err)
	}
	if len(applied.Execs) != 0 {
		t.Errorf("an applied restore ran %v in the agent; want nothing", applied.Execs)
	}
}

// TestUnhealthyBackupsWarn ensures late or failing backups do not stop an
// update: the tenant still deploys (the warning names it, see the e2e),
// and the agent's health is read from its state file, running nothing in
// its container.
func TestUnhealthyBackupsWarn(t *testing.T) {
	m := newMocks()
	withAgent(m, "")
	m.Files = map[string]string{"thor-agent:" + contract.AgentStateFile: `{"updated":"` + time.Now().UTC().Format(time.RFC3339) + `","problems":["repository failing since 2026-11-01T10:00:00Z: connection refused"]}`}
	if err := run(t, m, map[string]string{"tenants": `["thor"]`}); err != nil {
		t.Fatalf("a backup agent with problems failed the update: %v", err)
	}
	if _, ok := m.All()["docker:index/container:Container::thor-app"]; !ok {
		t.Errorf("thor's app was not declared")
	}
	if m.FileReads != 1 {
		t.Errorf("the program read %d agent state files; want thor's one", m.FileReads)
	}
	if len(m.Execs) != 0 {
		t.Errorf("reading the agents' health ran %v in a container; want nothing run", m.Execs)
	}
}

// TestAgentWarnings ensures every tenant whose backups need attention is
// named with why, read from its agent's state file: the agent's own
// problems, a state not written for minutes (a stuck agent), an agent not
// running, a state that cannot be read; and only those tenants.
func TestAgentWarnings(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	state := func(updated time.Time, problems ...string) string {
		b, _ := json.Marshal(contract.AgentStatus{Updated: updated, Problems: problems})
		return string(b)
	}
	e := &fakes.Engine{Files: map[string]string{
		"a-ok:" + contract.AgentStateFile:    state(now.Add(-20 * time.Second)),
		"a-late:" + contract.AgentStateFile:  state(now.Add(-10*time.Second), "last base backup 26h0m0s ago (2026-11-29T10:00:00Z), schedule every 24h0m0s"),
		"a-stuck:" + contract.AgentStateFile: state(now.Add(-5 * time.Minute)),
		"a-bad:" + contract.AgentStateFile:   "{not json",
	}}
	agents := map[string]dockerapi.ContainerSummary{
		"ok": {ID: "a-ok", State: "running"}, "late": {ID: "a-late", State: "running"}, "stuck": {ID: "a-stuck", State: "running"},
		"bad": {ID: "a-bad", State: "running"}, "gone": {ID: "a-gone", State: "running"}, "stopped": {ID: "a-stopped", State: "exited"},
	}
	var ts []spec.Tenant
	for _, n := range []string{"ok", "late", "stuck", "bad", "gone", "stopped", "new"} {
		ts = append(ts, spec.Tenant{Name: n})
	}
	got := agentWarnings(context.Background(), e, agents, ts, "polls-dev", now)
	want := []string{
		"tenant late: backups need attention: last base backup 26h0m0s ago",
		"tenant stuck: backups need attention: the agent has not updated its state since 2026-11-30T11:55:00Z",
		"tenant bad: backups need attention: its agent's state cannot be read",
		"tenant gone: backups need attention: its agent's state cannot be read (no file /spool/state.json",
		"tenant stopped: backups need attention: its agent is exited (see `docker exec polls-dev-stopped-backup polls-agent backup status`)",
	}
	if len(got) != len(want) {
		t.Fatalf("agentWarnings =\n%s\nwant %d warnings, for late, stuck, bad, gone and stopped", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %d = %q; want it to start %q", i, got[i], want[i])
		}
	}
	if e.FileReads != 5 {
		t.Errorf("%d state files read; want one per running agent (5)", e.FileReads)
	}
}

// TestAgentsShareSlots ensures every tenant's agent mounts the stack's one
// base backup slots volume, beside its own spool: the slots bound the base
// backups of all the engine's agents only if they all share them.
func TestAgentsShareSlots(t *testing.T) {
	m := newMocks()
	if err := run(t, m, map[string]string{"tenants": tenantList("thor", "potter", "loki")}); err != nil {
		t.Fatalf("program: %v", err)
	}
	all := m.All()
	slots := all["docker:index/volume:Volume::backup-slots"]
	if slots == nil || slots["name"].StringValue() != "polls-dev-backup-slots" {
		t.Fatalf("slots volume: %v; want polls-dev-backup-slots", slots)
	}
	for _, tenant := range []string{"thor", "potter", "loki"} {
		c := all["docker:index/container:Container::"+tenant+"-backup"]
		if c == nil {
			t.Fatalf("no agent for %s", tenant)
		}
		mounts := map[string]string{}
		for _, mt := range c["mounts"].ArrayValue() {
			o := mt.ObjectValue()
			mounts[o["target"].StringValue()] = o["source"].StringValue()
		}
		want := map[string]string{contract.SpoolMount: "polls-dev-" + tenant + "-backup-spool", contract.SlotsMount: "polls-dev-backup-slots"}
		if fmt.Sprint(mounts) != fmt.Sprint(want) {
			t.Errorf("%s's agent mounts %v; want %v", tenant, mounts, want)
		}
	}
}

// readsAfter wraps the fake engine and records, at the first agent state
// file read, what the program had registered by then.
type readsAfter struct {
	*fakes.Engine
	p     *fakes.Provider
	once  sync.Once
	order []string
}

// Wait makes albus's app, if any, take a moment to become healthy: the
// new tenant's path takes time.
func (r *readsAfter) Wait(ctx context.Context, id string, within time.Duration) error {
	if id == fakes.ID("albus-app") {
		time.Sleep(200 * time.Millisecond)
	}
	return r.Engine.Wait(ctx, id, within)
}

func (r *readsAfter) ReadFile(ctx context.Context, id, path string) ([]byte, error) {
	r.once.Do(func() { r.order = r.p.Order() })
	return r.Engine.ReadFile(ctx, id, path)
}

// TestAgentHealthReadBeside ensures the agents' state files are read
// beside the registrations, not before the first one: at 100 tenants the
// reads held every preview and update back by seconds. In an update that
// adds a tenant they start once the new tenant's route is live, off its
// path.
func TestAgentHealthReadBeside(t *testing.T) {
	for _, tt := range []struct {
		name    string
		tenants []string
		// after must be registered before the first read.
		after string
	}{
		{"no new tenant", []string{"thor", "potter"}, "polls:index:Tenant::potter"},
		{"albus added", []string{"thor", "potter", "albus"}, "docker:index/container:Container::albus-app"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first := newMocks()
			if err := run(t, first, map[string]string{"tenants": tenantList("thor", "potter")}); err != nil {
				t.Fatal(err)
			}
			m := newMocks()
			m.NetworkList = first.declaredNetworks()
			withAgent(m, "")
			m.Files = map[string]string{"thor-agent:" + contract.AgentStateFile: `{"updated":"2020-01-01T00:00:00Z"}`}
			e := &readsAfter{Engine: m.Engine, p: m.Provider}
			err := pulumi.RunErr(program(func(string) (Engine, error) { return e, nil }), pulumi.WithMocks("polls", "dev", m), func(info *pulumi.RunInfo) {
				info.Config = map[string]string{"polls:tenants": tenantList(tt.tenants...)}
			})
			if err != nil {
				t.Fatalf("program: %v", err)
			}
			if m.FileReads != 1 {
				t.Fatalf("%d state files read; want thor's agent's", m.FileReads)
			}
			if !slices.Contains(e.order, tt.after) {
				t.Errorf("the agents' state was read before %s was registered (registered by then: %d resources); want it read beside the registrations", tt.after, len(e.order))
			}
		})
	}
}
