package raftnode

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/warrenorch/warren/core/fsm"
)

// Group commit. Proposals wait in the proposer's queue while maxInFlight
// log entries are on their way through Raft; the next entry then carries
// everything that queued meanwhile, as one fsm.Batch. Under load, many
// writes share one entry's Raft work (an encoded log record, a future, a
// trip through the leader loop and the FSM); a lone write never waits, as
// fewer than maxInFlight entries are in flight.
const (
	// maxInFlight bounds the entries the proposer has in Raft at once.
	maxInFlight = 4
	// maxBatchCommands and maxBatchBytes bound one entry.
	maxBatchCommands = 256
	maxBatchBytes    = 1 << 20
	// maxBatchedCommand is the size above which a command is proposed as
	// an entry of its own, never batched. A command that is an fsm.Batch
	// already (a writer's commands that must share an index) is proposed
	// on its own too: a batch never holds another.
	maxBatchedCommand = 64 << 10
)

// errShutdown answers proposals still queued when the node shuts down.
var errShutdown = raft.ErrRaftShutdown

type proposal struct {
	data    []byte
	timeout time.Duration // Raft's enqueue timeout for this write
	done    chan proposalResult
}

type proposalResult struct {
	resp any
	err  error // Raft's error for the whole entry
}

// proposer gathers concurrent proposals into batch entries.
type proposer struct {
	raft     *raft.Raft
	queue    chan proposal
	inFlight chan struct{}
	stop     chan struct{}
	stopped  chan struct{}  // closed once every proposal taken is answered
	answers  sync.WaitGroup // entries in Raft whose proposals wait
	stopOnce sync.Once
}

func newProposer(r *raft.Raft) *proposer {
	p := &proposer{
		raft:     r,
		queue:    make(chan proposal, maxBatchCommands),
		inFlight: make(chan struct{}, maxInFlight),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	go p.run()
	return p
}

// propose commits data (an fsm.Encode'd command) and returns its FSM
// result, waiting for the outcome as raft.Apply does.
func (p *proposer) propose(data []byte, timeout time.Duration) (any, error) {
	if len(data) > maxBatchedCommand || fsm.CommandType(data[0])&^fsm.IgnoreUnknownTypeFlag == fsm.BatchType {
		f := p.raft.Apply(data, timeout)
		if err := f.Error(); err != nil {
			return nil, err
		}
		return f.Response(), nil
	}
	q := proposal{data: data, timeout: timeout, done: make(chan proposalResult, 1)}
	select {
	case p.queue <- q:
	case <-p.stop:
		return nil, errShutdown
	}
	var r proposalResult
	select {
	case r = <-q.done:
	case <-p.stopped:
		// Everything the proposer took is answered; what is still queued
		// never will be proposed, q perhaps among it.
		p.drain()
		r = <-q.done
	}
	return r.resp, r.err
}

// close stops the proposer; queued proposals get errShutdown, those in
// Raft get Raft's own answer (after Raft's shutdown, ErrRaftShutdown).
func (p *proposer) close() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.stopped
}

func (p *proposer) run() {
	defer close(p.stopped)
	defer p.answers.Wait()
	for {
		var first proposal
		select {
		case first = <-p.queue:
		case <-p.stop:
			p.drain()
			return
		}
		// Wait for room in Raft before gathering: what queues meanwhile
		// joins this entry.
		select {
		case p.inFlight <- struct{}{}:
		case <-p.stop:
			first.done <- proposalResult{err: errShutdown}
			p.drain()
			return
		}
		batch := p.gather(first)
		p.submit(batch)
	}
}

// gather takes first and whatever else is queued, within the batch bounds.
func (p *proposer) gather(first proposal) []proposal {
	batch := []proposal{first}
	size := len(first.data)
	for len(batch) < maxBatchCommands {
		select {
		case q := <-p.queue:
			if size+len(q.data) > maxBatchBytes {
				// Too big to join: this entry goes as it is, and q
				// starts the next one.
				p.submit(batch)
				p.inFlight <- struct{}{}
				batch, size = nil, 0
			}
			batch = append(batch, q)
			size += len(q.data)
		default:
			return batch
		}
	}
	return batch
}

// submit proposes batch as one entry (a single command as itself) and
// answers its proposals when Raft is done with it. The caller holds a slot
// in inFlight, which is released then.
func (p *proposer) submit(batch []proposal) {
	data := batch[0].data
	timeout := batch[0].timeout
	if len(batch) > 1 {
		cmds := make([][]byte, len(batch))
		for i, q := range batch {
			cmds[i] = q.data
			timeout = min(timeout, q.timeout)
		}
		var err error
		if data, err = fsm.EncodeBatch(cmds); err != nil {
			<-p.inFlight
			answerAll(batch, proposalResult{err: err})
			return
		}
	}
	f := p.raft.Apply(data, timeout)
	p.answers.Add(1)
	go func() {
		defer p.answers.Done()
		err := f.Error()
		<-p.inFlight
		resp := f.Response()
		results, isBatch := resp.([]any)
		switch {
		case err != nil:
			answerAll(batch, proposalResult{err: err})
		case len(batch) == 1:
			batch[0].done <- proposalResult{resp: resp}
		case isBatch && len(results) == len(batch):
			for i, q := range batch {
				q.done <- proposalResult{resp: results[i]}
			}
		default:
			// The FSM refused the entry as a whole (it did not decode):
			// that refusal is each command's result.
			if _, refused := resp.(error); !refused {
				resp = errors.New("raft: a batch entry's response does not match its commands")
			}
			answerAll(batch, proposalResult{resp: resp})
		}
	}()
}

// answerAll gives every proposal of batch the same answer.
func answerAll(batch []proposal, r proposalResult) {
	for _, q := range batch {
		q.done <- r
	}
}

// drain answers the proposals left in the queue after stop.
func (p *proposer) drain() {
	for {
		select {
		case q := <-p.queue:
			q.done <- proposalResult{err: errShutdown}
		default:
			return
		}
	}
}
