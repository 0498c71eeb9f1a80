package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// parseFlags parses args into fs, returning errors instead of printing
// them, with the flags' usage in the error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err != nil {
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		if errors.Is(err, flag.ErrHelp) {
			err = errors.New("help requested")
		}
		return fmt.Errorf("%s: %w; flags:\n%s", fs.Name(), err, b.String())
	}
	return nil
}
