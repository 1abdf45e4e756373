package consumer

// SetCrashAfterPublish makes c skip the ack of results f returns true for.
func SetCrashAfterPublish(c *Consumer, f func(requestID string) bool) { c.crashAfterPublish = f }
