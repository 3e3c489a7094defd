package api_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// rawCodec sends a []byte request as it is, so that a test can put bytes on
// the wire that no protobuf encoder would write. Its name is proto's: the
// server reads the request with its protobuf codec.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestMalformedRequestsAreInvalidArgument sends requests that are not
// valid protobuf of their message to unary and streaming methods: each is
// refused with InvalidArgument naming the method, not Internal.
func TestMalformedRequestsAreInvalidArgument(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		method string
		stream *grpc.StreamDesc
		body   []byte
	}{
		{"truncated varint", "/warren.api.v1.Warren/CreateService", nil, []byte{0x08, 0xff, 0xff}},
		{"field number 0", "/warren.api.v1.Warren/ListServices", nil, []byte{0x00, 0x01}},
		{"length past the end", "/warren.api.v1.Warren/GetService", nil, []byte{0x0a, 0x7f, 'w', 'e', 'b'}},
		{"invalid UTF-8 in a string", "/warren.api.v1.Warren/GetService", nil, []byte{0x0a, 0x02, 0xff, 0xfe}},
		{"server stream", "/warren.api.v1.Warren/Events", &grpc.StreamDesc{ServerStreams: true}, []byte{0x0a, 0x7f}},
		{"another server stream", "/warren.api.v1.Warren/TaskLogs", &grpc.StreamDesc{ServerStreams: true}, []byte{0x20, 0x80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.stream == nil {
				var reply []byte
				err = e.conn.Invoke(ctx, tt.method, tt.body, &reply, grpc.ForceCodec(rawCodec{}))
			} else {
				err = rawStream(ctx, e.conn, tt.stream, tt.method, tt.body)
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.method+": malformed request message") {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tt.method)
			}
		})
	}
	// A well-formed request still works on the same connection.
	if _, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{}); err != nil {
		t.Fatalf("list services after the malformed requests: %v", err)
	}
}

// rawStream opens a stream, sends body as its (only) request and returns
// the stream's final error.
func rawStream(ctx context.Context, conn *grpc.ClientConn, desc *grpc.StreamDesc, method string, body []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := conn.NewStream(ctx, desc, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(body); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		var reply []byte
		if err := s.RecvMsg(&reply); err != nil {
			return err
		}
	}
}
