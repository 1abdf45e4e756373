package consumer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo"
)

// A dry run (DRY_RUN) takes the same path as a real run with GET /integrations/{id} in
// place of every DELETE, and no ledger: a GET changes nothing, so making it twice is
// harmless and nothing needs to be recorded once. Protect and expect apply as they would;
// the fuse does not (it counts DELETEs). Its results go to DryRunSubject with Nats-Msg-Id
// dryrun-<request id>: would_delete, not_found or failed.

// shownIntegration is what a dry run's result tells of the integration a delete would
// remove.
type shownIntegration struct {
	Tool             string `json:"tool"`
	Category         string `json:"category"`
	Status           string `json:"status"`
	OrganizationName string `json:"organization_name"`
	OriginID         string `json:"origin_id"`
	CreatedAt        string `json:"created_at"`
}

func integrationOf(in kombo.Integration) *shownIntegration {
	return &shownIntegration{Tool: in.Tool, Category: in.Category, Status: in.Status,
		OrganizationName: in.EndUser.OrganizationName, OriginID: in.EndUser.OriginID,
		CreatedAt: in.CreatedAt.UTC().Format(time.RFC3339)}
}

// finishDry publishes a dry run's result and acks (or terminates, for term) the message.
// A deleted result with not_found becomes not_found; would_delete and failed stay.
func (c *Consumer) finishDry(j *job, res Result, term bool, outcome string) {
	if res.Status == StatusDeleted {
		res.Status, res.NotFound = statusNotFound, nil
	}
	data, err := json.Marshal(res)
	if err != nil { // a Result always encodes; kept so that a change that breaks it shows
		panic(fmt.Sprintf("consumer: encode result: %v", err))
	}
	if _, _, err := c.publish(j.cutoff, c.o.DryRunSubject, "dryrun-"+res.RequestID, data, j.msg.Headers()); err != nil {
		j.log(c.log).Error("cannot store the dry-run result; the request will be redelivered", "err", err)
		return
	}
	if term {
		err = j.msg.TermWithReason(outcome)
	} else {
		err = j.msg.Ack()
	}
	if err != nil {
		j.log(c.log).Warn("ack failed; the request will be redelivered", "err", err)
	}
	c.m.requests.WithLabelValues(outcome).Inc()
	j.log(c.log).Info("dry run: request done", "outcome", res.Status, "dry_run", true)
}
