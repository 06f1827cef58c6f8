package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	gw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// The etcd versions etcdsql answers as on /version and in Status.
const (
	ServerVersion  = "3.5.0"
	ClusterVersion = "3.5.0"
)

// gateway is the HTTP side of the client port, shared by every listener:
// etcd's generated gateway, calling the gateway's own gRPC server (see
// Server.gwGRPC) over an in-memory connection (so it needs no address, no
// TLS and no port of its own), and /version, /health and /metrics.
type gateway struct {
	handler http.Handler
	conn    *grpc.ClientConn
	cancel  context.CancelFunc
}

// gateway returns the server's gateway, building it on first use. The
// caller holds s.mu.
func (s *Server) gateway() (*gateway, error) {
	if s.gw != nil {
		return s.gw, nil
	}
	inproc := bufconn.Listen(1 << 20)
	go s.gwGRPC.Serve(inproc) // ends with its GracefulStop or Stop
	ctx, cancel := context.WithCancel(context.Background())
	handler, conn, err := s.httpHandler(ctx, func(ctx context.Context, _ string) (net.Conn, error) { return inproc.DialContext(ctx) })
	if err != nil {
		cancel()
		return nil, err
	}
	s.gw = &gateway{handler: handler, conn: conn, cancel: cancel}
	return s.gw, nil
}

func (g *gateway) close() {
	g.conn.Close()
	g.cancel()
}

// httpHandler builds the gateway's handler over a gRPC connection that
// dial makes.
func (s *Server) httpHandler(ctx context.Context, dial func(context.Context, string) (net.Conn, error)) (http.Handler, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///gateway",
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<31-1), grpc.MaxCallSendMsgSize(1<<31-1)))
	if err != nil {
		return nil, nil, fmt.Errorf("rpc: gateway: %w", err)
	}
	marshaler := &gatewayMarshaler{JSONPb: &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}}
	gwmux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithErrorHandler(gatewayError),
		runtime.WithRoutingErrorHandler(routingError),
	)
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler, gw.RegisterWatchHandler, gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler, gw.RegisterMaintenanceHandler, gw.RegisterAuthHandler,
	} {
		if err := register(ctx, gwmux, conn); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("rpc: gateway: %w", err)
		}
	}
	mux := http.NewServeMux()
	limit := s.gatewayBodyLimit()
	mux.Handle("/v3/", wholeBody(gwmux, limit, false))
	// The gateway's stream handlers drop a request they cannot decode and
	// leave the client waiting (watch) or answer an empty 200 (keepalive):
	// reject those with 400 first.
	mux.Handle("/v3/watch", wholeBody(checkFirstObject(gwmux, marshaler, func() proto.Message { return protoadapt.MessageV2Of(&pb.WatchRequest{}) }), limit, true))
	mux.Handle("/v3/lease/keepalive", wholeBody(checkFirstObject(gwmux, marshaler, func() proto.Message { return protoadapt.MessageV2Of(&pb.LeaseKeepAliveRequest{}) }), limit, true))
	mux.HandleFunc("/version", s.serveVersion)
	mux.HandleFunc("/health", s.serveHealth)
	gatherer := s.cfg.Gatherer
	if gatherer == nil {
		gatherer = prometheus.NewRegistry()
	}
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if s.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v3beta/") {
			r.URL.Path = "/v3/" + strings.TrimPrefix(r.URL.Path, "/v3beta/")
		}
		mux.ServeHTTP(w, r)
	}), conn, nil
}

// gatewayMarshaler is the proto JSON etcd's gateway speaks, with stream
// errors in the shape etcd 3.4's gateway wrote them, which lua-resty-etcd
// reads (http_code >= 500 marks the endpoint unhealthy).
type gatewayMarshaler struct{ *runtime.JSONPb }

func (m *gatewayMarshaler) Marshal(v any) ([]byte, error) {
	if chunk, ok := v.(map[string]proto.Message); ok {
		if st, ok := chunk["error"].(*spb.Status); ok {
			code := codes.Code(st.GetCode())
			hc := httpStatusFromCode(code)
			return json.Marshal(map[string]any{"error": streamError{
				GRPCCode: int32(code), HTTPCode: int32(hc), Message: st.GetMessage(), HTTPStatus: http.StatusText(hc),
			}})
		}
	}
	return m.JSONPb.Marshal(v)
}

type streamError struct {
	GRPCCode   int32  `json:"grpc_code"`
	HTTPCode   int32  `json:"http_code"`
	Message    string `json:"message"`
	HTTPStatus string `json:"http_status"`
}

// errorBody is the unary error reply of etcd's gateway.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Code    int32  `json:"code"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func gatewayError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	st := status.Convert(err)
	writeJSON(w, httpStatusFromCode(st.Code()), errorBody{Error: st.Message(), Message: st.Message(), Code: int32(st.Code())})
}

func routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, httpStatus int) {
	code := codes.NotFound
	if httpStatus == http.StatusMethodNotAllowed {
		code = codes.Unimplemented
	}
	msg := http.StatusText(httpStatus)
	writeJSON(w, httpStatus, errorBody{Error: msg, Message: msg, Code: int32(code)})
}

// checkFirstObject reads the first JSON object of a streaming request body
// and answers 400, as a unary call would, if it does not decode into the
// request message; otherwise the body goes on to next unchanged. Only the
// first object is read, so a client that keeps its body open to stream more
// requests is not blocked.
func checkFirstObject(next http.Handler, m *gatewayMarshaler, newMsg func() proto.Message) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		var first json.RawMessage
		err := dec.Decode(&first)
		if errors.Is(err, io.EOF) {
			next.ServeHTTP(w, r)
			return
		}
		if err == nil {
			err = m.Unmarshal(first, newMsg())
		}
		if err == nil && bytes.Equal(bytes.TrimSpace(first), []byte("null")) {
			// etcd's gateway leaves such a stream without any reply;
			// a unary call would get 400.
			err = m.JSONPb.Unmarshal(first, newMsg())
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error(), Message: err.Error(), Code: int32(codes.InvalidArgument)})
			return
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(first), dec.Buffered(), r.Body), r.Body}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"etcdserver": ServerVersion, "etcdcluster": ClusterVersion})
}

// reasonDraining is /health's reason while the member stops.
const reasonDraining = "draining: the member is stopping"

// serveHealth answers 200 when this member can serve a linearizable read
// (or, with ?serializable=true, when it knows a leader), 503 otherwise, so
// load balancers drain members that cannot serve.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"health": "false", "reason": reasonDraining})
		return
	}
	err := s.b.Healthy()
	if err == nil && r.URL.Query().Get("serializable") != "true" {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		_, err = s.b.Range(ctx, &pb.RangeRequest{Key: []byte("health")})
		cancel()
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"health": "false", "reason": status.Convert(togRPCError(err)).Message()})
		return
	}
	// Reads and watches go on while the database is down, so the member
	// stays in the load balancer (all members share one database); the
	// reason says writes are refused, and ?writable=true makes it a 503.
	if err := s.b.SinkHealthy(); err != nil {
		reason := "database unavailable: writes are refused"
		// A database that refuses an entry needs an operator, however
		// long the sink retries: a 503, with the database's reason.
		if errors.Is(err, ErrStorageRefused) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"health": "false", "reason": err.Error()})
			return
		}
		if r.URL.Query().Get("writable") == "true" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"health": "false", "reason": reason})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"health": "true", "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"health": "true", "reason": ""})
}
