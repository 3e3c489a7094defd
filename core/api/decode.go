package api

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Malformed requests. gRPC answers a request message it cannot parse
// (invalid protobuf, invalid UTF-8 in a string field) with Internal, which
// says the server is at fault, and sends that status from inside its own
// read, before a handler or an interceptor can change it. So the services
// registered through RegisterService read each request in two steps: the
// server's codec (RequestCodec) hands over the message's bytes untouched,
// and the handler parses them, answering a failure with InvalidArgument
// naming the method.

// RequestCodec is the server option that RegisterService needs: the
// protobuf codec, except that it hands a request's bytes to the services
// registered through RegisterService to parse themselves, and sends
// wireBytes (events encoded once for every stream) as they are. Services
// registered otherwise are served as with the default codec. A server has
// one codec: this one does both jobs.
func RequestCodec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(requestCodec{encoding.GetCodecV2(protoenc.Name)})
}

type requestCodec struct{ encoding.CodecV2 }

// Marshal encodes v; wireBytes are already encoded.
func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(wireBytes); ok {
		// A SliceBuffer is never returned to a pool: the bytes stay
		// shared and unchanged.
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// wireMethods is a server that answers some of its unary methods with
// wireBytes: RegisterService installs its handlers, by method name, in
// place of the generated ones. Each is the generated handler but for the
// response it sends.
type wireMethods interface {
	wireHandlers() map[string]grpc.MethodHandler
}

// rawRequest is a request message's bytes, not yet parsed.
type rawRequest []byte

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		*r = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// RegisterService registers impl as the service desc describes on r (a
// server made with RequestCodec), as the generated RegisterXServer does,
// except that a request message that does not parse is answered with
// InvalidArgument instead of Internal.
func RegisterService(r grpc.ServiceRegistrar, desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	wire, _ := impl.(wireMethods)
	for i, m := range desc.Methods {
		h := m.Handler
		if wire != nil {
			if w := wire.wireHandlers()[m.MethodName]; w != nil {
				h = w
			}
		}
		method := "/" + desc.ServiceName + "/" + m.MethodName
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error { return parseRequest(method, dec, v) }, in)
		}
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, s := range desc.Streams {
		h := s.Handler
		method := "/" + desc.ServiceName + "/" + s.StreamName
		s.Handler = func(srv any, stream grpc.ServerStream) error {
			return h(srv, &parsingStream{ServerStream: stream, method: method})
		}
		d.Streams[i] = s
	}
	r.RegisterService(&d, impl)
}

// parsingStream parses the requests of a stream as parseRequest does.
type parsingStream struct {
	grpc.ServerStream
	method string
}

func (s *parsingStream) RecvMsg(m any) error {
	return parseRequest(s.method, s.ServerStream.RecvMsg, m)
}

// parseRequest reads a request's bytes with recv and parses them into v.
func parseRequest(method string, recv func(any) error, v any) error {
	var raw rawRequest
	if err := recv(&raw); err != nil {
		return err
	}
	m, ok := v.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "%s: request type %T is not a protobuf message", method, v)
	}
	if err := proto.Unmarshal(raw, m); err != nil {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("%s: malformed request message: %v", method, err))
	}
	return nil
}
