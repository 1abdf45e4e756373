package testkit

// The contract's defaults for the stream, the durable consumer, the subjects and the ledger
// bucket, which the suites leave as they are.
const (
	StreamName     = "INTEGRATION_DELETE"
	ConsumerName   = "integration-deleter"
	RequestSubject = "integration.delete.requested"
	DeletedSubject = "integration.delete.deleted"
	FailedSubject  = "integration.delete.failed"
	LedgerBucket   = "INTEGRATION_DELETE_LEDGER"
)
