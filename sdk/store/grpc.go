package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	"github.com/warrenorch/warren/sdk"
	storev1 "github.com/warrenorch/warren/sdk/proto/store/v1"
)

// chunkBytes bounds the records sent in one stream message.
const chunkBytes = 1 << 20

// Serve runs impl as a store plugin process. Call it from main.
func Serve(impl Store) {
	sdk.Serve(sdk.KindStore, impl, Register(impl))
}

// Register returns the function that registers impl's store service on a
// gRPC server.
func Register(impl Store) sdk.RegisterFunc {
	return func(s grpc.ServiceRegistrar) { storev1.RegisterStoreServer(s, &server{impl: impl}) }
}

// NewClient returns a Store that calls a store plugin over conn.
func NewClient(conn grpc.ClientConnInterface) Store {
	return &client{BaseClient: sdk.NewBaseClient(conn), rpc: storev1.NewStoreClient(conn)}
}

func toPB(r Record) *storev1.Record {
	return &storev1.Record{Bucket: r.Bucket, Key: r.Key, Value: r.Value}
}

func fromPB(r *storev1.Record) Record {
	return Record{Bucket: r.GetBucket(), Key: r.GetKey(), Value: r.GetValue()}
}

func recSize(r Record) int { return len(r.Bucket) + len(r.Key) + len(r.Value) + 16 }

type server struct {
	storev1.UnimplementedStoreServer
	impl Store
}

func (s *server) Apply(ctx context.Context, req *storev1.ApplyRequest) (*storev1.ApplyResponse, error) {
	b := Batch{Index: req.GetIndex(), Ops: make([]Op, 0, len(req.GetOps()))}
	for _, op := range req.GetOps() {
		b.Ops = append(b.Ops, Op{Type: OpType(op.GetType()), Bucket: op.GetBucket(), Key: op.GetKey(), Value: op.GetValue()})
	}
	applied, err := s.impl.Apply(ctx, b)
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &storev1.ApplyResponse{Applied: applied}, nil
}

func (s *server) Get(ctx context.Context, req *storev1.GetRequest) (*storev1.GetResponse, error) {
	v, err := s.impl.Get(ctx, req.GetBucket(), req.GetKey())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &storev1.GetResponse{Value: v}, nil
}

func (s *server) List(req *storev1.ListRequest, stream storev1.Store_ListServer) error {
	recs, err := s.impl.List(stream.Context(), req.GetBucket(), req.GetPrefix())
	if err != nil {
		return sdk.ToStatus(err)
	}
	return sendChunks(&SliceReader{Records: recs}, func(pb []*storev1.Record) error {
		return stream.Send(&storev1.ListResponse{Records: pb})
	})
}

func (s *server) AppliedIndex(ctx context.Context, _ *storev1.AppliedIndexRequest) (*storev1.AppliedIndexResponse, error) {
	idx, err := s.impl.AppliedIndex(ctx)
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &storev1.AppliedIndexResponse{Index: idx}, nil
}

func (s *server) Snapshot(_ *storev1.SnapshotRequest, stream storev1.Store_SnapshotServer) error {
	snap, err := s.impl.Snapshot(stream.Context())
	if err != nil {
		return sdk.ToStatus(err)
	}
	defer snap.Close()
	// The first message carries only the index: once the client has it, the
	// snapshot's point in time is fixed.
	if err := stream.Send(&storev1.SnapshotChunk{Index: snap.Index()}); err != nil {
		return err
	}
	return sdk.ToStatus(sendChunks(snap, func(pb []*storev1.Record) error {
		return stream.Send(&storev1.SnapshotChunk{Records: pb})
	}))
}

func (s *server) Restore(stream storev1.Store_RestoreServer) error {
	first, err := stream.Recv()
	if err != nil {
		return sdk.ToStatus(fmt.Errorf("restore: reading header: %w", err))
	}
	src := &streamSource{recv: func() ([]*storev1.Record, error) {
		chunk, err := stream.Recv()
		return chunk.GetRecords(), err
	}}
	src.buf = first.GetRecords()
	if err := s.impl.Restore(stream.Context(), first.GetIndex(), src); err != nil {
		return sdk.ToStatus(err)
	}
	return stream.SendAndClose(&storev1.RestoreResponse{})
}

type client struct {
	*sdk.BaseClient
	rpc storev1.StoreClient
}

func (c *client) Apply(ctx context.Context, b Batch) (bool, error) {
	req := &storev1.ApplyRequest{Index: b.Index, Ops: make([]*storev1.Op, 0, len(b.Ops))}
	for _, op := range b.Ops {
		req.Ops = append(req.Ops, &storev1.Op{Type: storev1.Op_Type(op.Type), Bucket: op.Bucket, Key: op.Key, Value: op.Value})
	}
	resp, err := c.rpc.Apply(ctx, req)
	if err != nil {
		return false, sdk.FromStatus(err)
	}
	return resp.GetApplied(), nil
}

func (c *client) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	resp, err := c.rpc.Get(ctx, &storev1.GetRequest{Bucket: bucket, Key: key})
	if err != nil {
		return nil, sdk.FromStatus(err)
	}
	return resp.GetValue(), nil
}

func (c *client) List(ctx context.Context, bucket, prefix string) ([]Record, error) {
	stream, err := c.rpc.List(ctx, &storev1.ListRequest{Bucket: bucket, Prefix: prefix})
	if err != nil {
		return nil, sdk.FromStatus(err)
	}
	var out []Record
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, sdk.FromStatus(err)
		}
		for _, r := range resp.GetRecords() {
			out = append(out, fromPB(r))
		}
	}
}

func (c *client) AppliedIndex(ctx context.Context) (uint64, error) {
	resp, err := c.rpc.AppliedIndex(ctx, &storev1.AppliedIndexRequest{})
	if err != nil {
		return 0, sdk.FromStatus(err)
	}
	return resp.GetIndex(), nil
}

func (c *client) Snapshot(ctx context.Context) (Snapshot, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.rpc.Snapshot(ctx, &storev1.SnapshotRequest{})
	if err != nil {
		cancel()
		return nil, sdk.FromStatus(err)
	}
	head, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, sdk.FromStatus(err)
	}
	return &clientSnapshot{
		index:  head.GetIndex(),
		cancel: cancel,
		streamSource: streamSource{recv: func() ([]*storev1.Record, error) {
			chunk, err := stream.Recv()
			if err != nil && err != io.EOF {
				err = sdk.FromStatus(err)
			}
			return chunk.GetRecords(), err
		}},
	}, nil
}

func (c *client) Restore(ctx context.Context, index uint64, src RecordReader) error {
	// Cancelling on return ends the stream when src fails midway, so the
	// plugin aborts its restore instead of waiting for more records.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Restore(ctx)
	if err != nil {
		return sdk.FromStatus(err)
	}
	if err := stream.Send(&storev1.RestoreChunk{Index: index}); err != nil {
		return c.restoreErr(stream, err)
	}
	err = sendChunks(src, func(pb []*storev1.Record) error {
		return stream.Send(&storev1.RestoreChunk{Records: pb})
	})
	if err != nil {
		return c.restoreErr(stream, err)
	}
	_, err = stream.CloseAndRecv()
	return sdk.FromStatus(err)
}

// restoreErr returns the server's error when a send failed because the
// server ended the stream, and the send error otherwise.
func (c *client) restoreErr(stream storev1.Store_RestoreClient, sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		_, err := stream.CloseAndRecv()
		return sdk.FromStatus(err)
	}
	return sdk.FromStatus(sendErr)
}

type clientSnapshot struct {
	streamSource
	index  uint64
	cancel context.CancelFunc
}

func (s *clientSnapshot) Index() uint64 { return s.index }
func (s *clientSnapshot) Close() error  { s.cancel(); return nil }

// sendChunks reads src to the end and sends its records in chunks of at most
// about chunkBytes.
func sendChunks(src RecordReader, send func([]*storev1.Record) error) error {
	var chunk []*storev1.Record
	size := 0
	for {
		rec, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if size+recSize(rec) > chunkBytes && len(chunk) > 0 {
			if err := send(chunk); err != nil {
				return err
			}
			chunk, size = nil, 0
		}
		chunk = append(chunk, toPB(rec))
		size += recSize(rec)
	}
	if len(chunk) > 0 {
		return send(chunk)
	}
	return nil
}

// streamSource turns a stream of record chunks into a RecordReader.
type streamSource struct {
	recv func() ([]*storev1.Record, error)
	buf  []*storev1.Record
	err  error
}

func (s *streamSource) Next() (Record, error) {
	for len(s.buf) == 0 {
		if s.err != nil {
			return Record{}, s.err
		}
		s.buf, s.err = s.recv()
	}
	r := s.buf[0]
	s.buf = s.buf[1:]
	return fromPB(r), nil
}
