package badgerstore

import (
	"bytes"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/amsync/amsync/engine/store"
)

// request is one Apply call waiting for the committer.
type request struct {
	ops  []encodedOp
	done chan error // buffered; receives exactly one result
}

type encodedOp struct {
	key []byte
	val []byte // a copy of the caller's data
	del bool
}

// newRequest validates and encodes ops, copying the data. It returns nil
// for an empty batch.
func (s *Store) newRequest(ops []store.Op) (*request, error) {
	for _, op := range ops {
		if err := op.Key.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %q", err, []string(op.Key))
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	r := &request{ops: make([]encodedOp, len(ops)), done: make(chan error, 1)}
	for i, op := range ops {
		key := encodeKey(op.Key)
		if len(key) > maxKeyBytes {
			return nil, fmt.Errorf("%w: %d bytes encoded, above %d", store.ErrInvalidKey, len(key), maxKeyBytes)
		}
		if op.Delete {
			r.ops[i] = encodedOp{key: key, del: true}
			continue
		}
		if limit := s.cfg.maxValueBytes(); int64(len(op.Data)) > limit {
			return nil, fmt.Errorf("%w: %d bytes for %s, limit %d", ErrValueTooLarge, len(op.Data), op.Key, limit)
		}
		r.ops[i] = encodedOp{key: key, val: bytes.Clone(op.Data)}
	}
	return r, nil
}

// commitLoop is the committer: it takes the first waiting request, drains
// whatever else is already queued (up to MaxCoalesce), and commits them
// together. Requests that arrive while a commit is being fsynced form the
// next group, so the group size adapts to the load with no timer.
func (s *Store) commitLoop() {
	defer close(s.committerDone)
	group := make([]*request, 0, s.cfg.MaxCoalesce)
	for r := range s.reqs {
		group = append(group[:0], r)
	drain:
		for len(group) < s.cfg.MaxCoalesce {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		s.commit(group)
		clear(group)
	}
}

// commit writes reqs in as few transactions as fit. Each request is atomic
// because it is never split across transactions; a request that does not
// fit even alone fails with ErrBatchTooLarge.
func (s *Store) commit(reqs []*request) {
	for len(reqs) > 0 {
		if errp := s.failed.Load(); errp != nil {
			s.deliver(reqs, fmt.Errorf("%w: %w", ErrFailed, *errp))
			return
		}
		txn := s.db.NewTransaction(true)
		n, err := fill(txn, reqs)
		if err != nil {
			txn.Discard()
			if n == 0 {
				// reqs[0] cannot be written even alone.
				if errors.Is(err, badger.ErrTxnTooBig) {
					err = fmt.Errorf("%w: %d ops", ErrBatchTooLarge, len(reqs[0].ops))
				} else {
					err = fmt.Errorf("badgerstore: apply: %w", err)
				}
				s.deliver(reqs[:1], err)
				reqs = reqs[1:]
				continue
			}
			// reqs[n] does not fit with reqs[:n]: commit those alone, and
			// start the next transaction with reqs[n].
			txn = s.db.NewTransaction(true)
			if _, err := fill(txn, reqs[:n]); err != nil {
				txn.Discard()
				s.deliver(reqs[:n], fmt.Errorf("badgerstore: apply: %w", err))
				reqs = reqs[n:]
				continue
			}
		}
		err = txn.Commit()
		if err != nil {
			err = fmt.Errorf("badgerstore: commit: %w", err)
			first := err
			s.failed.CompareAndSwap(nil, &first)
			s.log.Error("badgerstore: write failed; refusing further writes", "err", err, "batches", n)
		} else {
			s.commits.Add(1)
		}
		s.deliver(reqs[:n], err)
		reqs = reqs[n:]
	}
}

// fill adds the ops of reqs to txn in order. It returns how many requests
// were added whole, and the error that stopped it at request n.
func fill(txn *badger.Txn, reqs []*request) (int, error) {
	for i, r := range reqs {
		for _, op := range r.ops {
			var err error
			if op.del {
				err = txn.Delete(op.key)
			} else {
				err = txn.Set(op.key, op.val)
			}
			if err != nil {
				return i, err
			}
		}
	}
	return len(reqs), nil
}

func (s *Store) deliver(reqs []*request, err error) {
	for _, r := range reqs {
		if err == nil {
			s.applies.Add(1)
			s.ops.Add(uint64(len(r.ops)))
		} else {
			s.failures.Add(1)
		}
		r.done <- err
	}
}
