// Command grpc-consumer is the real consumer of the broker's grpc-bundle-map output: a gRPC
// server and a gRPC client, both from grpc-go (Go module proxy), that trust peers through a SPIFFE
// Bundle Map file (gRFC A87) and complete mTLS once.
//
//   - The client uses grpc-go's own SPIFFE support end to end: the "tls" channel credentials of
//     google.golang.org/grpc/xds/bootstrap (gRFC A65), configured with certificate_file,
//     private_key_file and spiffe_trust_bundle_map_file. grpc-go loads the map
//     (credentials/tls/certprovider/pemfile → internal/credentials/spiffe) and verifies the server
//     against the bundle of the server's trust domain, refusing a trust domain not in the map.
//   - The server loads the same file through grpc-go's pemfile certificate provider (its
//     SPIFFEBundleMap key material: grpc-go's parser) and verifies the client with go-spiffe's
//     x509svid.ParseAndVerify against those bundles: grpc-go exposes its server-side SPIFFE
//     verification only behind an xDS control plane.
//
// Usage:
//
//	grpc-consumer -version
//	grpc-consumer -bundle-map F -server-cert F -server-key F -client-cert F -client-key F
//
// Prints one JSON line: {"ok":true,"serverPeer":"spiffe://…","clientPeer":"spiffe://…"} and exits
// 0, or {"ok":false,"error":"…","serverError":"…"} and exits 1; 2 for a usage or setup error.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/tls/certprovider"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	xdsbootstrap "google.golang.org/grpc/xds/bootstrap"
)

// spiffeEnv turns on grpc-go's SPIFFE Bundle Map support (gRFC A87); read once at package init.
const spiffeEnv = "GRPC_EXPERIMENTAL_XDS_MTLS_SPIFFE"

type result struct {
	OK          bool   `json:"ok"`
	ServerPeer  string `json:"serverPeer,omitempty"`
	ClientPeer  string `json:"clientPeer,omitempty"`
	Error       string `json:"error,omitempty"`
	ServerError string `json:"serverError,omitempty"`
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "grpc-consumer: "+format+"\n", args...)
	os.Exit(code)
}

func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return "unknown"
}

func main() {
	version := flag.Bool("version", false, "print the grpc-go and go-spiffe versions")
	bundleMap := flag.String("bundle-map", "", "SPIFFE Bundle Map file (the broker's grpc-bundle-map output)")
	serverCert := flag.String("server-cert", "", "server X509-SVID chain, PEM")
	serverKey := flag.String("server-key", "", "server private key, PEM")
	clientCert := flag.String("client-cert", "", "client X509-SVID chain, PEM")
	clientKey := flag.String("client-key", "", "client private key, PEM")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of the whole exchange")
	flag.Parse()
	if *version {
		fmt.Printf("grpc-go %s, go-spiffe %s\n", moduleVersion("google.golang.org/grpc"), moduleVersion("github.com/spiffe/go-spiffe/v2"))
		return
	}
	if *bundleMap == "" || *serverCert == "" || *serverKey == "" || *clientCert == "" || *clientKey == "" {
		fail(2, "-bundle-map, -server-cert, -server-key, -client-cert and -client-key are required")
	}
	if os.Getenv(spiffeEnv) != "true" {
		// grpc-go reads the switch at init: run again with it set.
		exe, err := os.Executable()
		if err != nil {
			fail(2, "cannot find own executable: %v", err)
		}
		if err := syscall.Exec(exe, os.Args, append(os.Environ(), spiffeEnv+"=true")); err != nil {
			fail(2, "cannot re-exec with %s=true: %v", spiffeEnv, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r := exchange(ctx, *bundleMap, *serverCert, *serverKey, *clientCert, *clientKey)
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if !r.OK {
		os.Exit(1)
	}
}

// serverCreds: the server's SVID and the client verification, from grpc-go's pemfile provider.
func serverCreds(bundleMap, certFile, keyFile string, record func(error)) (credentials.TransportCredentials, func(), error) {
	provider, err := pemfile.NewProvider(pemfile.Options{
		CertFile:            certFile,
		KeyFile:             keyFile,
		SPIFFEBundleMapFile: bundleMap,
		RefreshDuration:     time.Hour,
	})
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			km, err := provider.KeyMaterial(hello.Context())
			if err != nil {
				return nil, err
			}
			if len(km.Certs) == 0 {
				return nil, errors.New("no server certificate loaded")
			}
			return &km.Certs[0], nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			err := verifyClient(provider, raw)
			record(err)
			return err
		},
	}
	return credentials.NewTLS(cfg), provider.Close, nil
}

func verifyClient(provider certprovider.Provider, raw [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	km, err := provider.KeyMaterial(ctx)
	if err != nil {
		return err
	}
	if km.SPIFFEBundleMap == nil {
		return errors.New("grpc-go loaded no SPIFFE Bundle Map")
	}
	set := spiffebundle.NewSet()
	for _, b := range km.SPIFFEBundleMap {
		set.Add(b)
	}
	_, _, err = x509svid.ParseAndVerify(raw, set)
	return err
}

// clientCreds: grpc-go's own "tls" channel credentials with spiffe_trust_bundle_map_file.
func clientCreds(bundleMap, certFile, keyFile string) (credentials.TransportCredentials, func(), error) {
	builder := xdsbootstrap.GetChannelCredentials("tls")
	if builder == nil {
		return nil, nil, errors.New(`grpc-go has no "tls" channel credentials registered`)
	}
	cfg, _ := json.Marshal(map[string]string{
		"certificate_file":             certFile,
		"private_key_file":             keyFile,
		"spiffe_trust_bundle_map_file": bundleMap,
	})
	bundle, closeFn, err := builder.Build(cfg)
	if err != nil {
		return nil, nil, err
	}
	return bundle.TransportCredentials(), closeFn, nil
}

func peerID(p *peer.Peer) string {
	if p == nil {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 || len(info.State.PeerCertificates[0].URIs) == 0 {
		return ""
	}
	return info.State.PeerCertificates[0].URIs[0].String()
}

type seenPeer struct {
	healthpb.HealthServer
	mu   sync.Mutex
	seen string
}

func (s *seenPeer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	p, _ := peer.FromContext(ctx)
	s.mu.Lock()
	s.seen = peerID(p)
	s.mu.Unlock()
	return s.HealthServer.Check(ctx, req)
}

func exchange(ctx context.Context, bundleMap, serverCert, serverKey, clientCert, clientKey string) result {
	var mu sync.Mutex
	var serverErr error
	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			serverErr = err
		}
	}
	sCreds, sClose, err := serverCreds(bundleMap, serverCert, serverKey, record)
	if err != nil {
		fail(2, "server credentials: %v", err)
	}
	defer sClose()
	cCreds, cClose, err := clientCreds(bundleMap, clientCert, clientKey)
	if err != nil {
		fail(2, "client credentials: %v", err)
	}
	defer cClose()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(2, "listen: %v", err)
	}
	srv := grpc.NewServer(grpc.Creds(sCreds))
	hs := &seenPeer{HealthServer: health.NewServer()}
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(cCreds))
	if err != nil {
		fail(2, "client: %v", err)
	}
	defer conn.Close()
	var p peer.Peer
	_, callErr := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	mu.Lock()
	defer mu.Unlock()
	r := result{}
	if serverErr != nil {
		r.ServerError = serverErr.Error()
	}
	if callErr != nil {
		r.Error = callErr.Error()
		return r
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	r.OK = true
	r.ServerPeer = hs.seen
	r.ClientPeer = peerID(&p)
	return r
}
