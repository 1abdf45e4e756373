package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/internal/control"
)

const protectUsage = `Usage:
  integration-deleter protect add [--reason TEXT] [--all] [--by NAME] PATTERN…
  integration-deleter protect rm PATTERN…
  integration-deleter protect ls

Protected integration ids never get a DELETE: a request for one ends failed with code
DELETER.PROTECTED. A pattern is an exact id, or has '*' matching any run of characters
("acme:*"); there is no other special character. A pattern of '*' only protects every
integration and is refused without --all. The list is kept in the KV bucket PROTECT_BUCKET
(created when missing with JETSTREAM_PROVISION=true, so an id can be protected before the
daemon first runs); every replica applies a change within a second. Each subcommand takes
--json and --help.
`

func runProtect(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, protectUsage)
		return cli.UsageError{Err: errors.New("protect: give a subcommand: add, rm or ls")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, protectUsage)
		return nil
	case "add":
		return runProtectAdd(ctx, args[1:], lookupEnv, stdout, stderr)
	case "rm":
		return runProtectRemove(ctx, args[1:], lookupEnv, stdout, stderr)
	case "ls":
		return runProtectList(ctx, args[1:], lookupEnv, stdout, stderr)
	}
	fmt.Fprint(stderr, protectUsage)
	return cli.UsageError{Err: fmt.Errorf("protect: unknown subcommand %q (add, rm or ls)", args[0])}
}

// withProtect runs a protect subcommand's body with the protect list, as withClient does;
// the list's bucket is created when missing if JETSTREAM_PROVISION is on.
func withProtect(ctx context.Context, cmd string, lookupEnv lookupFunc, stderr io.Writer,
	body func(ctx context.Context, p *control.Protect) error,
) error {
	return withClient(ctx, cmd, lookupEnv, stderr, func(ctx context.Context, c *client) error {
		// Only add creates the bucket (with provisioning on, as the daemon would): rm and ls
		// of a bucket no daemon made would hide a typo in PROTECT_BUCKET.
		create := cmd == "protect add" && c.cfg.JetStreamProvision
		p, err := control.OpenProtect(ctx, c.js, c.cfg.ProtectBucket, c.cfg.StreamReplicas, create)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		return body(ctx, p)
	})
}

// checkPatterns refuses the whole command line when one pattern is bad, so that nothing
// is written; it returns the patterns without repeats.
func checkPatterns(cmd string, patterns []string, all bool) ([]string, error) {
	if len(patterns) == 0 {
		return nil, cli.UsageError{Err: fmt.Errorf("%s: give at least one pattern", cmd)}
	}
	var errs []error
	for _, p := range patterns {
		if err := control.CheckPattern(p, all); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", cmd, p, err))
		}
	}
	if len(errs) > 0 {
		return nil, cli.UsageError{Err: errors.Join(errs...)}
	}
	var unique []string
	for _, p := range patterns {
		if !slices.Contains(unique, p) {
			unique = append(unique, p)
		}
	}
	return unique, nil
}

// protectionJSON is the --json line of one protection.
type protectionJSON struct {
	Pattern string `json:"pattern"`
	Reason  string `json:"reason"`
	AddedAt string `json:"added_at"`
}

func protectionLine(pr control.Protection) protectionJSON {
	return protectionJSON{Pattern: pr.Pattern, Reason: pr.Reason, AddedAt: pr.AddedAt.UTC().Format(time.RFC3339)}
}

func runProtectAdd(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var reason, by string
	var all, asJSON bool
	patterns, err := parseFlags("protect add [--reason TEXT] [--all] [--by NAME] PATTERN…",
		"Protect integration ids from deletion: exact ids, or patterns with '*'.", args, stdout, stderr, func(fs *flag.FlagSet) {
			fs.StringVar(&reason, "reason", "", "why, shown in the failed result of a protected request")
			fs.StringVar(&by, "by", "", "who protects (default $USER@hostname)")
			fs.BoolVar(&all, "all", false, "allow a pattern of '*' only, which protects every integration (stops all deletes)")
			fs.BoolVar(&asJSON, "json", false, `print {"pattern","reason","added_at"} per pattern as JSON lines`)
		})
	if err != nil {
		return helpOK(err)
	}
	if patterns, err = checkPatterns("protect add", patterns, all); err != nil {
		return err
	}
	if by == "" {
		by = operator(lookupEnv)
	}
	return withProtect(ctx, "protect add", lookupEnv, stderr, func(ctx context.Context, p *control.Protect) error {
		for _, pattern := range patterns {
			pr := control.Protection{Pattern: pattern, Reason: reason, By: by, AddedAt: time.Now().UTC()}
			if err := p.Add(ctx, pr); err != nil {
				return fmt.Errorf("protect add: %w", err)
			}
			if asJSON {
				printJSON(stdout, protectionLine(pr))
			} else {
				fmt.Fprintf(stdout, "protected %s\n", pattern)
			}
		}
		return nil
	})
}

func runProtectRemove(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var asJSON bool
	patterns, err := parseFlags("protect rm PATTERN…", `Remove protections, each by its exact pattern (not the ids it matches). A pattern that was
not protected is reported, and makes the exit code 1; the others are removed.`, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, `print {"pattern","removed"} per pattern as JSON lines`)
	})
	if err != nil {
		return helpOK(err)
	}
	if patterns, err = checkPatterns("protect rm", patterns, true); err != nil {
		return err
	}
	return withProtect(ctx, "protect rm", lookupEnv, stderr, func(ctx context.Context, p *control.Protect) error {
		absent := 0
		for _, pattern := range patterns {
			removed, err := p.Remove(ctx, pattern)
			if err != nil {
				return fmt.Errorf("protect rm: %w", err)
			}
			switch {
			case asJSON:
				printJSON(stdout, struct {
					Pattern string `json:"pattern"`
					Removed bool   `json:"removed"`
				}{pattern, removed})
			case removed:
				fmt.Fprintf(stdout, "unprotected %s\n", pattern)
			}
			if !removed {
				absent++
				fmt.Fprintf(stderr, "protect rm: %q was not protected (nothing removed; 'protect ls' lists the patterns)\n", pattern)
			}
		}
		if absent > 0 {
			return fmt.Errorf("protect rm: %d of %d pattern(s) were not protected", absent, len(patterns))
		}
		return nil
	})
}

func runProtectList(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var asJSON bool
	args, err := parseFlags("protect ls", "List the protected integration id patterns.", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, `print {"pattern","reason","added_at"} per protection as JSON lines`)
	})
	if err != nil {
		return helpOK(err)
	}
	if len(args) > 0 {
		return cli.UsageError{Err: fmt.Errorf("protect ls takes no arguments, got %q", args)}
	}
	return withProtect(ctx, "protect ls", lookupEnv, stderr, func(ctx context.Context, p *control.Protect) error {
		list, err := p.List(ctx)
		if err != nil {
			return fmt.Errorf("protect ls: %w", err)
		}
		if asJSON {
			for _, pr := range list {
				printJSON(stdout, protectionLine(pr))
			}
			return nil
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "no integration id is protected")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PATTERN\tADDED_AT\tBY\tREASON")
		for _, pr := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", pr.Pattern, pr.AddedAt.UTC().Format(time.RFC3339), pr.By, pr.Reason)
		}
		return tw.Flush()
	})
}
