package main

import (
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// forwarded are the signals init passes on to the server: SIGINT is
// PostgreSQL's fast shutdown (the services' stop signal), SIGTERM its smart
// shutdown, SIGQUIT its immediate shutdown, SIGHUP a reload of its config,
// SIGUSR1 and SIGUSR2 what its own processes use among themselves.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// superviseAsInit runs path with argv and env as the only child of this
// process, PID 1 of the container, and returns the exit status to exit
// with once the child exits: its own, or 128 plus the number of the signal
// that ended it, as a shell reports one.
//
// PostgreSQL must not be PID 1. A health check that times out is killed,
// and what it started (psql, pg_isready) is orphaned to PID 1; a postmaster
// there would reap a child it never started, take one that died by a
// signal for a crashed backend and restart every connection, and never reap
// the others, which stay zombies. Swarm services have no init option in the
// provider, so on Swarm this process is the init: it reaps every child the
// kernel gives it, orphans included, and passes the stop signal on to the
// server. Where the container has Docker's init already (one host), this
// process is not PID 1 and execs the entrypoint instead.
func superviseAsInit(path string, argv, env []string) int {
	// Subscribed before the child exists, so no exit or stop signal is
	// missed; buffered, as the runtime drops what a full channel cannot
	// take (a lost SIGCHLD is made good by the periodic reap below).
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, forwarded...)...)
	defer signal.Stop(sigs)

	child, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}})
	if err != nil {
		log.Printf("start %s: %v", path, err)
		return 1
	}
	// Reaping is also done once a second whatever arrives, as tini does.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGCHLD {
				// The child may have exited a moment ago: then there is
				// no one to pass it to, and its exit is about to be reaped.
				_ = syscall.Kill(child, sig.(syscall.Signal))
				continue
			}
		case <-tick.C:
		}
		if status, done := reap(child); done {
			return status
		}
	}
}

// reap collects every child that has exited, and reports whether child is
// one of them and with which exit status.
func reap(child int) (status int, done bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return status, done
		}
		if pid != child {
			continue
		}
		done = true
		switch {
		case ws.Exited():
			status = ws.ExitStatus()
		case ws.Signaled():
			status = 128 + int(ws.Signal())
		default:
			status = 1
		}
	}
}
