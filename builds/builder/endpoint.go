package builder

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	controlapi "github.com/moby/buildkit/api/services/control"
)

// Users says whether a user may build through the endpoint (exists, and
// has the builder role or above). The accounts service implements it.
type Users interface {
	MayBuild(ctx context.Context, user string) error
}

// EndpointConfig wires an Endpoint.
type EndpointConfig struct {
	CA    *CA
	Certs Certs
	Users Users
	// Hosts are the names and addresses clients reach the endpoint by, for
	// its server certificate (localhost and loopback are always in it).
	Hosts []string
	// Backend is the BuildKit node the endpoint passes the API to (unix:// or tcp://).
	Backend string
	// BackendTLS holds the node's client credentials for a tcp:// backend; nil for none.
	BackendTLS *tls.Config
	// Watcher, when set, is told of every solve that passes, with the
	// certificate's user; it records them as Manifold builds.
	Watcher Watcher
	Log     *slog.Logger
}

// Solve is one build a client started through the endpoint: who (the
// certificate's user) and what it asked BuildKit for.
type Solve struct {
	User    string
	Request *controlapi.SolveRequest
	// Cancel ends the client's solve (the call to the node), for a user who
	// cancels the build in Manifold.
	Cancel func()
}

// Watcher follows the solves that pass through the endpoint. Began is
// called when a solve's request has arrived, before the node sees it, and
// may change the request (Manifold's source policy session goes in it); an
// error refuses the solve. The function it returns is called with the
// node's answer (the exporter's response) or its error, before the client
// gets it: the client waits while it runs.
type Watcher interface {
	Began(ctx context.Context, s *Solve) (ended func(*controlapi.SolveResponse, error), err error)
}

// Endpoint is BuildKit's gRPC API behind mutual TLS: a client certificate
// this CA issued, not expired, not revoked, whose user may build, opens it;
// then every call and stream (the solve, its session, status, history)
// passes to the node unchanged.
type Endpoint struct {
	cfg     EndpointConfig
	tls     *tls.Config
	backend *grpc.ClientConn
	server  *grpc.Server
}

// NewEndpoint makes the endpoint; Serve runs it.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cert, err := cfg.CA.ServerCert(cfg.Hosts)
	if err != nil {
		return nil, fmt.Errorf("make the builder endpoint's certificate: %w", err)
	}
	e := &Endpoint{cfg: cfg}
	e.tls = &tls.Config{
		MinVersion:       tls.VersionTLS12,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert, // signed by the CA and within its dates
		ClientCAs:        cfg.CA.Pool(),
		VerifyConnection: e.verify,
		NextProtos:       []string{"h2"},
	}
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	target := cfg.Backend
	if strings.HasPrefix(target, "tcp://") {
		target = strings.TrimPrefix(target, "tcp://")
		if cfg.BackendTLS != nil {
			creds = grpc.WithTransportCredentials(credentials.NewTLS(cfg.BackendTLS))
		}
	}
	if e.backend, err = grpc.NewClient(target, creds, grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}))); err != nil {
		return nil, fmt.Errorf("dial the builder endpoint's BuildKit %s: %w", cfg.Backend, err)
	}
	// The handshake is the endpoint's own (mtls), not gRPC's TLS credentials:
	// those refuse clients that do not offer ALPN "h2", and buildx's remote
	// driver makes its TLS connection without it.
	e.server = grpc.NewServer(
		grpc.Creds(mtls{e.tls}),
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(e.pass),
		grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20),
	)
	return e, nil
}

// verify refuses, during the handshake, a certificate Manifold did not
// record, one that was revoked, and one whose user may no longer build.
func (e *Endpoint) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("a client certificate is required; make one with `manifold builder-cert`")
	}
	leaf := cs.PeerCertificates[0]
	serial := hex.EncodeToString(leaf.SerialNumber.Bytes())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, ok, err := e.cfg.Certs.Cert(ctx, serial)
	switch {
	case err != nil:
		return fmt.Errorf("check the client certificate: %w", err)
	case !ok || c.User != leaf.Subject.CommonName:
		return fmt.Errorf("client certificate %s was not issued by this Manifold", serial)
	case c.RevokedAt != nil:
		e.cfg.Log.Info("builder certificate refused: revoked", "serial", serial, "user", c.User)
		return fmt.Errorf("client certificate %s was revoked", serial)
	case time.Now().After(c.ExpiresAt):
		return fmt.Errorf("client certificate %s expired on %s", serial, c.ExpiresAt.Format(time.DateOnly))
	}
	if err := e.cfg.Users.MayBuild(ctx, c.User); err != nil {
		return fmt.Errorf("user %s may not build: %w", c.User, err)
	}
	return nil
}

// Serve runs the endpoint on l until ctx ends.
func (e *Endpoint) Serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		e.server.GracefulStop()
	}()
	err := e.server.Serve(l)
	_ = e.backend.Close()
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop ends the endpoint at once.
func (e *Endpoint) Stop() { e.server.Stop() }

// pass relays one call or stream to the node: the caller's metadata (the
// session's headers among them), every message both ways, then the node's
// headers, trailers and status.
func (e *Endpoint) pass(_ any, in grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(in)
	if !ok {
		return errors.New("no method")
	}
	md, _ := metadata.FromIncomingContext(in.Context())
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(in.Context(), md.Copy()))
	defer cancel()
	switch method {
	case controlapi.Control_Prune_FullMethodName:
		// The node's cache is shared with Manifold's own builds and every other user's.
		return status.Error(codes.PermissionDenied, "the builder endpoint does not prune the shared builder's cache; BuildKit's garbage collection keeps it within its limits")
	case controlapi.Control_UpdateBuildHistory_FullMethodName:
		var first []byte
		if err := in.RecvMsg(&first); err != nil {
			return err
		}
		var req controlapi.UpdateBuildHistoryRequest
		if err := proto.Unmarshal(first, &req); err != nil {
			return status.Errorf(codes.InvalidArgument, "read the history request: %v", err)
		}
		if req.Delete {
			return status.Errorf(codes.PermissionDenied, "the builder endpoint does not delete build %s from the shared builder's history; Manifold keeps its own record of it", req.Ref)
		}
		return e.relay(ctx, in, method, first, nil)
	case controlapi.Control_Solve_FullMethodName:
		return e.solve(ctx, cancel, in, method)
	}
	return e.relay(ctx, in, method, nil, nil)
}

// solve passes a solve: its request says what is built (entitlements are
// refused), and the watcher, told of it, records it.
func (e *Endpoint) solve(ctx context.Context, cancel func(), in grpc.ServerStream, method string) error {
	var first []byte
	if err := in.RecvMsg(&first); err != nil {
		return err
	}
	var req controlapi.SolveRequest
	if err := proto.Unmarshal(first, &req); err != nil {
		return status.Errorf(codes.InvalidArgument, "read the solve request: %v", err)
	}
	if len(req.Entitlements) > 0 {
		// Manifold's own builds never run with them either.
		return status.Errorf(codes.PermissionDenied, "the builder endpoint grants no entitlements, and this build asks for %s; build without --allow", strings.Join(req.Entitlements, ", "))
	}
	if e.cfg.Watcher == nil {
		return e.relay(ctx, in, method, first, nil)
	}
	solve := &Solve{User: peerUser(in.Context()), Request: &req, Cancel: cancel}
	ended, err := e.cfg.Watcher.Began(in.Context(), solve)
	if err != nil {
		return status.Errorf(codes.Unavailable, "%v", err)
	}
	if first, err = proto.Marshal(solve.Request); err != nil {
		ended(nil, err)
		return status.Errorf(codes.Internal, "pass the solve request on: %v", err)
	}
	// The watcher hears the node's answer before the client does, so it
	// can record the build before `docker buildx build` returns.
	told := false
	err = e.relay(ctx, in, method, first, func(m []byte) {
		resp := &controlapi.SolveResponse{}
		if uerr := proto.Unmarshal(m, resp); uerr != nil {
			e.cfg.Log.Warn("read the node's solve response", "err", uerr)
		}
		told = true
		ended(resp, nil)
	})
	if !told {
		ended(nil, err)
	}
	return err
}

// relay passes one call's messages both ways; first, when set, is the
// caller's first message, already read; seen, when set, sees each of the
// node's messages.
func (e *Endpoint) relay(ctx context.Context, in grpc.ServerStream, method string, first []byte, seen func([]byte)) error {
	out, err := e.backend.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	if first != nil {
		if err := out.SendMsg(&first); err != nil {
			return err
		}
	}
	up := make(chan error, 1)
	go func() {
		for {
			var m []byte
			if err := in.RecvMsg(&m); err != nil {
				if errors.Is(err, io.EOF) {
					up <- out.CloseSend()
				} else {
					up <- err
				}
				return
			}
			if err := out.SendMsg(&m); err != nil {
				up <- err
				return
			}
		}
	}()
	if hdr, err := out.Header(); err == nil {
		_ = in.SendHeader(hdr)
	}
	for {
		var m []byte
		if err := out.RecvMsg(&m); err != nil {
			in.SetTrailer(out.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if seen != nil {
			seen(m)
		}
		if err := in.SendMsg(&m); err != nil {
			return err
		}
	}
}

// peerUser is the user a call's client certificate names (the handshake
// checked it).
func peerUser(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	return info.State.PeerCertificates[0].Subject.CommonName
}

// mtls is the endpoint's transport security: a TLS handshake with the
// endpoint's config (client certificate required and checked), without
// gRPC's demand for ALPN, handing gRPC the connection's state as its
// AuthInfo so a call knows its user.
type mtls struct{ cfg *tls.Config }

func (m mtls) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn := tls.Server(raw, m.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, credentials.TLSInfo{State: conn.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (m mtls) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("the builder endpoint's credentials are for its server only")
}

func (m mtls) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (m mtls) Clone() credentials.TransportCredentials { return mtls{m.cfg.Clone()} }

func (m mtls) OverrideServerName(string) error { return nil }

// rawCodec passes messages through as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot send %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot receive into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// Name is "proto": the messages are BuildKit's protobufs, untouched.
func (rawCodec) Name() string { return "proto" }
