// Package whoami is the examples' gRPC service: one method, Who, that
// answers with the name of the server that took the call. It is written
// by hand (a grpc.ServiceDesc over protobuf's well-known StringValue), so
// the examples need no protoc.
package whoami

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the gRPC service's full name.
const ServiceName = "slotreg.example.WhoAmI"

const whoMethod = "/" + ServiceName + "/Who"

// handler is what the service desc asks of a server implementation.
type handler interface {
	who(ctx context.Context, caller string) string
}

// named answers every call with its name.
type named string

func (n named) who(context.Context, string) string { return string(n) }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*handler)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Who",
		Handler: func(srv any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, req any) (any, error) {
				return wrapperspb.String(srv.(handler).who(ctx, req.(*wrapperspb.StringValue).GetValue())), nil
			}
			if intercept == nil {
				return call(ctx, in)
			}
			return intercept(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: whoMethod}, call)
		},
	}},
	Metadata: "whoami.go",
}

// Register adds the service to s; it answers with name.
func Register(s *grpc.Server, name string) {
	s.RegisterService(&serviceDesc, named(name))
}

// Who asks the server conn picks for its name, saying who calls.
func Who(ctx context.Context, conn grpc.ClientConnInterface, caller string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, whoMethod, wrapperspb.String(caller), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}
