package fsm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/warrenorch/warren/sdk/proto/store/v1"
	"github.com/warrenorch/warren/sdk/store"
)

// Snapshot format: the magic string, the store's index as a uvarint, then
// records, each a uvarint length and a storev1.Record message, then a zero
// length.

// maxSnapshotRecord bounds one record read back from a snapshot.
const maxSnapshotRecord = store.MaxValueLen + store.MaxKeyLen + store.MaxBucketLen + 64

type fsmSnapshot struct {
	snap store.Snapshot
}

// Persist streams the store snapshot into the Raft snapshot sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var lenBuf [binary.MaxVarintLen64]byte
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	n := binary.PutUvarint(lenBuf[:], s.snap.Index())
	if _, err := bw.Write(lenBuf[:n]); err != nil {
		return err
	}
	for {
		rec, err := s.snap.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		b, err := proto.Marshal(&storev1.Record{Bucket: rec.Bucket, Key: rec.Key, Value: rec.Value})
		if err != nil {
			return err
		}
		n := binary.PutUvarint(lenBuf[:], uint64(len(b)))
		if _, err := bw.Write(lenBuf[:n]); err != nil {
			return err
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	n = binary.PutUvarint(lenBuf[:], 0)
	if _, err := bw.Write(lenBuf[:n]); err != nil {
		return err
	}
	return bw.Flush()
}

// Release ends the store snapshot.
func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

// snapshotReader reads the format above; after header it is a
// store.RecordReader.
type snapshotReader struct {
	r    *bufio.Reader
	done bool
}

func newSnapshotReader(r io.Reader) *snapshotReader {
	return &snapshotReader{r: bufio.NewReaderSize(r, 256<<10)}
}

func (s *snapshotReader) header() (uint64, error) {
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(s.r, magic); err != nil || string(magic) != snapshotMagic {
		return 0, errSnapshotFormat
	}
	idx, err := binary.ReadUvarint(s.r)
	if err != nil {
		return 0, fmt.Errorf("read snapshot index: %w", err)
	}
	return idx, nil
}

// Next returns the next record, or io.EOF after the terminator.
func (s *snapshotReader) Next() (store.Record, error) {
	if s.done {
		return store.Record{}, io.EOF
	}
	n, err := binary.ReadUvarint(s.r)
	if err != nil {
		return store.Record{}, fmt.Errorf("read snapshot record length: %w", noEOF(err))
	}
	if n == 0 {
		s.done = true
		return store.Record{}, io.EOF
	}
	if n > maxSnapshotRecord {
		return store.Record{}, fmt.Errorf("snapshot record of %d bytes is too large", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(s.r, buf); err != nil {
		return store.Record{}, fmt.Errorf("read snapshot record: %w", noEOF(err))
	}
	var rec storev1.Record
	if err := proto.Unmarshal(buf, &rec); err != nil {
		return store.Record{}, fmt.Errorf("decode snapshot record: %w", err)
	}
	return store.Record{Bucket: rec.GetBucket(), Key: rec.GetKey(), Value: rec.GetValue()}, nil
}

// noEOF turns a premature io.EOF into io.ErrUnexpectedEOF, so a truncated
// snapshot is an error rather than a short restore.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
