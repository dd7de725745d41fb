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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
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
	Log        *slog.Logger
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

// userKey carries the certificate's user in a connection's context.
type userKey struct{}

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
	// TLS is the endpoint's own (Serve wraps the listener), not gRPC's: gRPC's
	// TLS refuses clients that do not offer ALPN "h2", and buildx's remote
	// driver makes its TLS connection without it.
	e.server = grpc.NewServer(
		grpc.Creds(insecure.NewCredentials()),
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
	err := e.server.Serve(tls.NewListener(l, e.tls))
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
	out, err := e.backend.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
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
		if err := in.SendMsg(&m); err != nil {
			return err
		}
	}
}

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
