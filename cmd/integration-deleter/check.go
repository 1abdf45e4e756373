package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/kombo"
)

// statusNotFound is the status check shows of an integration Kombo does not know (Kombo's
// own statuses are upper case).
const statusNotFound = "not_found"

// checkJSON is the --json line of one checked integration; every field but the id and the
// status is null when Kombo does not know it.
type checkJSON struct {
	IntegrationID    string  `json:"integration_id"`
	Tool             *string `json:"tool"`
	Category         *string `json:"category"`
	Status           string  `json:"status"`
	OrganizationName *string `json:"organization_name"`
	OriginID         *string `json:"origin_id"`
	CreatedAt        *string `json:"created_at"`
}

func runCheck(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var asJSON bool
	ids, err := parseFlags("check [--json] ID…", `Show what deleting each integration would remove: GET /integrations/{id} from Kombo (no
delete). Needs KOMBO_API_KEY. An id Kombo does not know is shown as not found (--json:
"status": "not_found", the other fields null). Exit code 1 when an id could not be checked
(no answer, key rejected).`, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, `print {"integration_id","tool","category","status","organization_name","origin_id","created_at"} per id`)
	})
	if err != nil {
		return helpOK(err)
	}
	if len(ids) == 0 {
		return cli.UsageError{Err: errors.New("check: give at least one integration id")}
	}
	cfg, err := config.Load(lookupEnv)
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("configuration:\n%w", err)}
	}
	kc, err := kombo.New(kombo.Options{BaseURL: cfg.KomboBaseURL, APIKey: cfg.KomboAPIKey.Reveal(),
		UserAgent: "integration-deleter/" + version, Timeout: cfg.KomboTimeout})
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("check: %w", err)}
	}
	var rows []checkJSON
	failed := 0
	for _, id := range ids {
		row, err := checkOne(ctx, kc, id)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "check: %s: cannot check: %v\n", id, err)
			continue
		}
		rows = append(rows, row)
	}
	printChecks(stdout, rows, asJSON)
	if failed > 0 {
		return fmt.Errorf("check: %d of %d integration(s) could not be checked", failed, len(ids))
	}
	return nil
}

// checkOne asks Kombo about the integration id.
func checkOne(ctx context.Context, kc *kombo.Client, id string) (checkJSON, error) {
	in, err := kc.GetIntegration(ctx, id)
	if errors.Is(err, kombo.ErrIntegrationNotFound) {
		return checkJSON{IntegrationID: id, Status: statusNotFound}, nil
	}
	if err != nil {
		return checkJSON{}, err
	}
	return checkJSON{IntegrationID: id, Tool: &in.Tool, Category: &in.Category, Status: in.Status,
		OrganizationName: &in.EndUser.OrganizationName, OriginID: &in.EndUser.OriginID, CreatedAt: rfc3339(in.CreatedAt)}, nil
}

func printChecks(w io.Writer, rows []checkJSON, asJSON bool) {
	if asJSON {
		for _, r := range rows {
			printJSON(w, r)
		}
		return
	}
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INTEGRATION_ID\tTOOL\tCATEGORY\tSTATUS\tORGANIZATION\tORIGIN_ID\tCREATED_AT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.IntegrationID, orDash(r.Tool), orDash(r.Category), r.Status,
			orDash(r.OrganizationName), orDash(r.OriginID), orDash(r.CreatedAt))
	}
	_ = tw.Flush()
}
