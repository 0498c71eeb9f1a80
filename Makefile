# Everyday commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
GO    ?= go

.PHONY: test test-short vet up up-local destroy images bench bench-app bench-compose bench-swarm bench-add bench-appstart bench-build bench-backup bench-https bench-monitoring bench-release lint backup-status backup-drill

## test: every test of the program, of app/ and of agent/, including real nginx,
## PostgreSQL and (when a Docker engine and the Pulumi toolchain are present)
## the end-to-end run; each part that lacks a tool skips naming it. The
## end-to-end tests run in two lanes (-parallel 3): TestSwarm beside
## TestACME and TestEndToEnd, which take turns (e2e/lanes_test.go).
test:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e$$)
	cd app && $(GO) test -count=1 ./...
	cd agent && $(GO) test -count=1 ./...
	$(GO) test -count=1 -v -timeout 75m -parallel 3 ./e2e

## test-short: the same without the slow end-to-end run.
test-short:
	$(GO) test -short -count=1 ./...
	cd app && $(GO) test -short -count=1 ./...
	cd agent && $(GO) test -short -count=1 ./...

## vet: gofmt, go vet, Go 1.26's modernizers (go fix -diff prints what
## they would change: nothing) and staticcheck, in every module.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
vet:
	@for m in . app agent; do \
		echo "== vet $$m"; \
		(cd $$m && test -z "$$(gofmt -l . | tee /dev/stderr)" && $(GO) vet ./... && \
			test -z "$$($(GO) fix -diff ./... | tee /dev/stderr)" && $(GO) run $(STATICCHECK) ./...) || exit 1; \
	done

## up: bring up the dev stack on a local file backend (no Pulumi account).
up:
	scripts/up.sh dev

## up-local: the same tenants on a host without registry access, with
## locally built images (stack "local", see Pulumi.local.yaml).
up-local:
	scripts/images.sh
	scripts/up.sh local

## destroy: remove a stack's containers and networks (STACK=dev by default);
## tenant data volumes are retained.
destroy:
	scripts/up.sh $${STACK:-dev} --destroy

## lint: the GitHub workflows, with actionlint built from its Go module.
lint:
	$(GO) run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 -no-color

images:
	scripts/images.sh

## bench: program evaluation under mocks for 10, 100 and 1000 tenants.
bench:
	$(GO) test -run '^$$' -bench BenchmarkProgram -benchtime 3x .

## bench-app: requests/s and p99 through nginx vs direct to the app.
bench-app:
	$(GO) test -run '^$$' -bench BenchmarkNginxOverhead -benchtime 1x ./nginx

## bench-compose: pulumi vs docker-compose: cold N=10/30, no-op, release and
## add under a request loop, idle RAM (BENCH_N100=1: also pulumi at N=100;
## BENCH_PULUMI_ENV: engine settings for the Pulumi side).
bench-compose:
	scripts/bench-compose.sh

## bench-appstart: CPU of the app's migrate and health-check processes, the
## working tree against BASE (default HEAD), ROUNDS runs each
## (scripts/bench-appstart.sh).
bench-appstart:
	scripts/bench-appstart.sh $(or $(BASE),HEAD) $(or $(ROUNDS),10)

## bench-add: adding one tenant to N=10, the working tree against BASE (a
## revision, default HEAD), alternating, ROUNDS times (scripts/bench-add.sh).
bench-add:
	scripts/bench-add.sh $(or $(BASE),HEAD) $(or $(ROUNDS),2)

## bench-build: release build time, BuildKit against the legacy builder, as
## `pulumi up` builds the app (scripts/bench-build.sh), ROUNDS rounds.
bench-build:
	scripts/bench-build.sh $(or $(ROUNDS),3)

## bench-swarm: pulumi (polls:platform swarm) vs docker stack deploy of the
## equivalent stack file at N=10 on the two-node test cluster: cold, and a
## release under a request loop (scripts/bench-swarm.sh).
bench-swarm:
	scripts/bench-swarm.sh

## backup-status: every tenant's last base backup, last archived log and
## problems (STACK=dev by default).
backup-status:
	@for c in $$(docker ps --filter label=polls.stack=polls-$${STACK:-dev} --filter label=polls.role=backup --format '{{.Names}}'); do \
		docker exec $$c polls-agent backup status; echo; done

## backup-drill: restore TENANT's latest backup into a scratch database,
## compare it with the live one, print the evidence and the RPO.
backup-drill:
	docker exec polls-$${STACK:-dev}-$(TENANT)-backup polls-agent backup drill

## bench-backup: what backups cost (idle memory and CPU per tenant, on vs
## off), a 1 GiB tenant's base backup, drill and in-place restore, and the
## RPO under a steady write load (scripts/bench-backup.sh).
bench-backup:
	scripts/bench-backup.sh

## bench-https: with ACME from a local pebble, requests/s through the router
## over HTTPS against plain HTTP (keep-alive and a new connection per
## request), and the time from `pulumi up` adding a tenant to its first
## verified HTTPS 200 (e2e TestACMEBench); first, in plain nginx, the cost of
## loading the certificate at each handshake against once (BenchmarkCertificateLoading).
bench-https:
	$(GO) test -run '^$$' -bench BenchmarkCertificateLoading -benchtime 1x ./nginx
	POLLS_BENCH_HTTPS=1 $(GO) test -count=1 -v -timeout 30m -run 'TestACMEBench$$' ./e2e

## bench-monitoring: what polls:monitoring costs against monitoring off, in
## one run: the router's median latency (BenchmarkMetricsOverhead) and the
## idle RAM per tenant (scripts/bench-monitoring.sh).
bench-monitoring:
	scripts/bench-monitoring.sh

## bench-release: no-op previews, then releases at N=BENCH_N tenants (default
## 30) with Pulumi's defaults against the engine setting BENCH_B (default
## PULUMI_SKIP_CHECKPOINTS=true), alternating A/B for BENCH_PREVIEWS and
## BENCH_ROUNDS rounds on one stack: time, CPU (split by process), state,
## failed requests, B/A.
bench-release:
	scripts/bench-release.sh
