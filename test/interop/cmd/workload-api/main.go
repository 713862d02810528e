// Command workload-api serves the X.509 part of the SPIFFE Workload API on a unix socket with
// go-spiffe v2's generated protobuf/gRPC code, so the broker's Workload API client is checked
// against the real wire format. It streams one X509-SVID read from PEM files and sends it again
// whenever the files change (checked every 100 ms), like an agent rotating an SVID.
//
//	workload-api -socket /tmp/x/agent.sock -id spiffe://td/x -svid chain.pem -key key.pem -bundle ca.pem
//
// Like a SPIRE agent, it refuses calls without the `workload.spiffe.io: true` metadata header
// (InvalidArgument, "security header missing from request"). It prints "ready" on stdout once
// listening and runs until killed.
package main

import (
	"bytes"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	id, svidPath, keyPath, bundlePath string
}

// derOf concatenates the DER bodies of every PEM block in the file.
func derOf(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		out = append(out, block.Bytes...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return out, nil
}

func (s *server) load() (*workload.X509SVIDResponse, []byte, error) {
	chain, err := derOf(s.svidPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := derOf(s.keyPath)
	if err != nil {
		return nil, nil, err
	}
	bundle, err := derOf(s.bundlePath)
	if err != nil {
		return nil, nil, err
	}
	resp := &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{{SpiffeId: s.id, X509Svid: chain, X509SvidKey: key, Bundle: bundle}},
	}
	return resp, append(append(append([]byte{}, chain...), key...), bundle...), nil
}

func (s *server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, ok := metadata.FromIncomingContext(stream.Context())
	if !ok || len(md.Get("workload.spiffe.io")) != 1 || md.Get("workload.spiffe.io")[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	var last []byte
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		resp, fingerprint, err := s.load()
		if err == nil && !bytes.Equal(fingerprint, last) {
			if err := stream.Send(resp); err != nil {
				return err
			}
			last = fingerprint
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-ticker.C:
		}
	}
}

func main() {
	s := &server{}
	socket := flag.String("socket", "", "unix socket path to listen on")
	flag.StringVar(&s.id, "id", "", "SPIFFE ID of the served SVID")
	flag.StringVar(&s.svidPath, "svid", "", "PEM certificate chain, leaf first")
	flag.StringVar(&s.keyPath, "key", "", "PEM PKCS#8 private key")
	flag.StringVar(&s.bundlePath, "bundle", "", "PEM CA certificates of the trust domain")
	flag.Parse()
	l, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload-api:", err)
		os.Exit(1)
	}
	g := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(g, s)
	fmt.Println("ready")
	if err := g.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, "workload-api:", err)
		os.Exit(1)
	}
}
