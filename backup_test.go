package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/dockerapi"
)

// withAgent gives the mock engine thor's running backup agent, whose
// backups restore to any moment of 2026-11-01.
func withAgent(m *mocks, dbRestore string) {
	m.ContainerList = []dockerapi.ContainerSummary{
		{ID: "thor-agent", Name: "polls-dev-thor-backup", State: "running", Health: "healthy",
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
// update: the tenant still deploys (the warning names it, see the e2e).
func TestUnhealthyBackupsWarn(t *testing.T) {
	m := newMocks()
	withAgent(m, "")
	m.ContainerList[0].Health = "unhealthy"
	m.HealthLogs = map[string]string{"thor-agent": "repository failing since 2026-11-01T10:00:00Z: connection refused"}
	if err := run(t, m, map[string]string{"tenants": `["thor"]`}); err != nil {
		t.Fatalf("an unhealthy backup agent failed the update: %v", err)
	}
	if _, ok := m.All()["docker:index/container:Container::thor-app"]; !ok {
		t.Errorf("thor's app was not declared")
	}
}
