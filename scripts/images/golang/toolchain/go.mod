// The Go toolchain of polls-local/golang:1.26 (see ../Dockerfile): the go
// command's own toolchain module, pinned here with its hash in go.sum.
module github.com/polls-tenants/polls/scripts/images/golang/toolchain

go 1.21

require golang.org/toolchain v0.0.1-go1.26.8.linux-amd64
