package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"
)

// group runs actors together, as oklog/run does: each actor has an execute, which runs
// until it is stopped, and an interrupt, which stops it; the end of the group's context or
// the first execute to return stops them all. Unlike oklog/run, which interrupts all at
// once and waits for them without a bound, the actors are stopped one after another, in the
// order they were added, each given its own budget: the interrupt of an actor is called
// only once the one before it has returned or used up its budget. So the shutdown order
// is the order of add, and the whole shutdown lasts at most the sum of the budgets.
type group struct {
	actors []*actor
}

// errEnded is the error of an actor that returned nil before the group was stopped.
var errEnded = errors.New("ended before the daemon was stopped")

// actor is one part of the daemon run by a group.
type actor struct {
	name      string
	execute   func() error
	interrupt func(ctx context.Context) // ctx ends when the actor's budget is used up
	budget    time.Duration
	done      chan struct{} // closed when execute has returned, err then set
	err       error
}

// add adds an actor. interrupt must make execute return; it is called once, with a
// context that ends budget after the actor's turn to stop began. execute's error should
// name the actor.
func (g *group) add(name string, budget time.Duration, execute func() error, interrupt func(ctx context.Context)) {
	g.actors = append(g.actors, &actor{name: name, execute: execute, interrupt: interrupt, budget: budget})
}

// run starts every actor and returns once ctx is done or one actor has returned, and all
// have been stopped. It returns the error of the actor that returned first (nil when ctx
// ended first), joined with the errors of the others and an error naming any actor that
// did not return within its budget. An actor's error names the actor itself. Such an actor is left
// running: the process is about to exit.
func (g *group) run(ctx context.Context) error {
	returned := make(chan *actor, len(g.actors))
	for _, a := range g.actors {
		a.done = make(chan struct{})
		go func() {
			a.err = a.execute()
			close(a.done)
			returned <- a
		}()
	}
	var first *actor
	select {
	case <-ctx.Done():
	case first = <-returned:
	}
	for _, a := range g.actors {
		a.stop()
	}
	var errs []error
	if first != nil {
		errs = append(errs, cmp.Or(first.err, fmt.Errorf("%s: %w", first.name, errEnded)))
	}
	for _, a := range g.actors {
		select {
		case <-a.done:
			if a != first && a.err != nil {
				errs = append(errs, fmt.Errorf("while stopping: %w", a.err))
			}
		default:
			errs = append(errs, fmt.Errorf("%s did not stop within its shutdown budget (%s)", a.name, a.budget))
		}
	}
	return errors.Join(errs...)
}

// stop interrupts a and waits until it returns or its budget is used up.
func (a *actor) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), a.budget)
	defer cancel()
	a.interrupt(ctx)
	select {
	case <-a.done:
	case <-ctx.Done():
	}
}
