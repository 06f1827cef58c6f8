package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// gatewayBodyLimit bounds a gateway request body: twice what the gRPC
// server accepts in one message, so that any body whose request fits
// (base64 makes bytes a third longer in JSON) reaches the gRPC server and
// its limits, as on etcd, while no body is buffered without bound.
func (s *Server) gatewayBodyLimit() int64 {
	return 2 * int64(s.cfg.MaxRequestBytes+grpcOverheadBytes)
}

// wholeBody reads a request body whole, before the gateway decodes it.
//
// Go's HTTP/1 server stops reading a body once a reply is under way with
// more than 256 KiB of it unread, and it only notices that the client went
// away once a handler has read the body to its end. The gateway's watch
// handler starts replying while it decodes, so a long body of creates was
// cut short, and the stream outlived its client until a send failed. Read
// whole, every request arrives, and the request's context ends with the
// connection.
//
// A body sent without a length on a streaming path (watch, keepalive) is
// a client streaming requests over an open body: it is left to be read as
// it comes, in full duplex, and a failed read (the client went away) ends
// the request's context.
func wholeBody(next http.Handler, limit int64, streaming bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if streaming && r.ContentLength < 0 {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			// Not every ResponseWriter can (HTTP/2's is full duplex
			// already); the body is still read as it comes.
			_ = http.NewResponseController(w).EnableFullDuplex()
			r = r.WithContext(ctx)
			r.Body = &cancelOnReadError{ReadCloser: r.Body, cancel: cancel}
			next.ServeHTTP(w, r)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				st := status.Convert(rpctypes.ErrGRPCRequestTooLarge)
				writeJSON(w, httpStatusFromCode(st.Code()), errorBody{Error: st.Message(), Message: st.Message(), Code: int32(st.Code())})
			}
			// Otherwise the client went away mid-body: nobody to answer.
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		next.ServeHTTP(w, r)
	})
}

// cancelOnReadError ends a streaming request's context when its body fails
// (the client closed the connection), so its watch stream ends with it.
type cancelOnReadError struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnReadError) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		c.cancel()
	}
	return n, err
}

// gatewayDecoder decodes a stream of JSON values with the gateway
// marshaler's Unmarshal, so streamed requests get the same leniency as
// unary ones.
type gatewayDecoder struct {
	dec *json.Decoder
	m   *gatewayMarshaler
}

func (d gatewayDecoder) Decode(v any) error {
	var raw json.RawMessage
	if err := d.dec.Decode(&raw); err != nil {
		return err
	}
	return d.m.Unmarshal(raw, v)
}

// lenientJSON rewrites the two bodies etcd 3.4's gateway accepted and
// protojson refuses: a top-level null (an empty request, which etcd's
// server then validates) and a oneof given more than one member (etcd's
// decoder kept one of them, whichever a map iteration met last; etcdsql
// keeps the member with the lowest field number, e.g. request_range over
// request_put). It reports false when data needs neither, so the original
// decoding error stands.
func lenientJSON(data []byte, md protoreflect.MessageDescriptor) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if v == nil {
		return []byte("{}"), true
	}
	if !dropExtraOneofMembers(v, md) {
		return nil, false
	}
	b, err := json.Marshal(v)
	return b, err == nil
}

// dropExtraOneofMembers walks v as the JSON form of a message of type md
// and deletes every oneof member but the one with the lowest field number,
// in v and in the messages it holds. It reports whether it deleted any.
func dropExtraOneofMembers(v any, md protoreflect.MessageDescriptor) bool {
	obj, ok := v.(map[string]any)
	if !ok {
		return false
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	changed := false
	kept := make(map[protoreflect.FullName]protoreflect.FieldDescriptor)
	keptKey := make(map[protoreflect.FullName]string)
	for _, k := range keys {
		fd := jsonField(md, k)
		if fd == nil {
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			prev, seen := kept[od.FullName()]
			switch {
			case !seen:
				kept[od.FullName()], keptKey[od.FullName()] = fd, k
			case fd.Number() < prev.Number():
				delete(obj, keptKey[od.FullName()])
				kept[od.FullName()], keptKey[od.FullName()] = fd, k
				changed = true
			case fd.Number() > prev.Number():
				delete(obj, k)
				changed = true
				continue
			}
		}
		if fd.Message() == nil || fd.IsMap() {
			continue
		}
		if fd.IsList() {
			list, _ := obj[k].([]any)
			for _, e := range list {
				changed = dropExtraOneofMembers(e, fd.Message()) || changed
			}
			continue
		}
		changed = dropExtraOneofMembers(obj[k], fd.Message()) || changed
	}
	return changed
}

// jsonField finds a field by either name protojson accepts.
func jsonField(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByJSONName(name); fd != nil {
		return fd
	}
	return md.Fields().ByTextName(name)
}

// Unmarshal decodes data into v with protojson, then, if that
// fails, once more after lenientJSON; the first error is the one reported.
func (m *gatewayMarshaler) Unmarshal(data []byte, v any) error {
	err := m.JSONPb.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return err
	}
	fixed, ok := lenientJSON(data, msg.ProtoReflect().Descriptor())
	if !ok {
		return err
	}
	if m.JSONPb.Unmarshal(fixed, v) != nil {
		return err
	}
	return nil
}

// NewDecoder returns a decoder that unmarshals with Unmarshal.
func (m *gatewayMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return gatewayDecoder{dec: json.NewDecoder(r), m: m}
}
