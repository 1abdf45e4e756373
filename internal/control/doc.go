// Package control holds the operator controls that stop or limit an irreversible job: the
// pause, the fuse and the protect list.
//
// All three live on the NATS server, not in a replica's memory, because a DELETE cannot be
// undone: a control must hold for every replica at once, survive restarts and deploys, and be
// changed by the CLI from anywhere without a restart.
//   - Pause is the durable consumer's JetStream pause, which the server enforces (no replica
//     is delivered a request while it lasts); a note in a KV bucket says why, who and when.
//   - Fuse is a stream that refuses its N+1st message within a window (MaxMsgs, MaxAge,
//     DiscardNew): a replica takes a token before each DELETE call, so the cap is enforced
//     atomically by the stream's leader across all replicas.
//   - Protect is a KV bucket of integration id patterns that must never be deleted, watched
//     by every replica.
package control
