package dockerapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// sshDialer returns a dialer that reaches the engine of the ssh host u
// through the remote docker CLI, like `docker -H ssh://…`: each connection
// is one `ssh … docker system dial-stdio`. BatchMode keeps ssh from asking
// for a password or a host key on a terminal nobody watches; the key and
// known host come from the user's ssh config or opts.
func sshDialer(u *url.URL, opts []string) func(context.Context, string, string) (net.Conn, error) {
	args := append([]string{"-o", "BatchMode=yes"}, opts...)
	if u.Port() != "" {
		args = append(args, "-p", u.Port())
	}
	if u.User != nil {
		args = append(args, "-l", u.User.Username())
	}
	args = append(args, "--", u.Hostname(), "docker", "system", "dial-stdio")
	return func(context.Context, string, string) (net.Conn, error) {
		// Not tied to the dial's context: the connection outlives it in
		// the transport's pool, and Close ends the session.
		cmd := exec.Command("ssh", args...)
		c := &cmdConn{cmd: cmd, what: "ssh " + strings.Join(args, " ")}
		cmd.Stderr = &c.stderr
		var err error
		if c.in, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if c.out, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("%s: %w", c.what, err)
		}
		return c, nil
	}
}

// cmdConn is a net.Conn over a command's stdin and stdout.
type cmdConn struct {
	cmd    *exec.Cmd
	what   string
	in     io.WriteCloser
	out    io.ReadCloser
	stderr bytes.Buffer // written by cmd until it was waited for

	once    sync.Once
	waitErr error
}

// Read returns, when the command ended with an error, that error and what
// it printed (ssh's "Permission denied", a remote "docker: not found")
// instead of a bare EOF.
func (c *cmdConn) Read(b []byte) (int, error) {
	n, err := c.out.Read(b)
	if errors.Is(err, io.EOF) {
		if werr := c.wait(); werr != nil {
			return n, fmt.Errorf("%s: %v: %s", c.what, werr, strings.TrimSpace(c.stderr.String()))
		}
	}
	return n, err
}

func (c *cmdConn) Write(b []byte) (int, error) { return c.in.Write(b) }

func (c *cmdConn) Close() error {
	_ = c.in.Close()
	_ = c.cmd.Process.Kill()
	_ = c.wait()
	return nil
}

// wait waits for the command once.
func (c *cmdConn) wait() error {
	c.once.Do(func() { c.waitErr = c.cmd.Wait() })
	return c.waitErr
}

func (c *cmdConn) LocalAddr() net.Addr              { return sshAddr{} }
func (c *cmdConn) RemoteAddr() net.Addr             { return sshAddr{} }
func (c *cmdConn) SetDeadline(time.Time) error      { return nil }
func (c *cmdConn) SetReadDeadline(time.Time) error  { return nil }
func (c *cmdConn) SetWriteDeadline(time.Time) error { return nil }

// sshAddr is the address of a connection through ssh: it has none.
type sshAddr struct{}

func (sshAddr) Network() string { return "ssh" }
func (sshAddr) String() string  { return "ssh" }
