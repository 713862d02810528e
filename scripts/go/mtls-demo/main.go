// Command mtls-demo is the example workload of the offline kind lab (scripts/kind-lab.sh --offline):
// a server and a client that authenticate each other with X509-SVIDs from their own SPIRE agent
// (Workload API at $SPIFFE_ENDPOINT_SOCKET, through go-spiffe v2) and verify the other side with
// the federated bundle SPIRE got from spiffe-broker. A third mode plays an intruder from a trust
// domain nobody federates with.
//
//	mtls-demo serve   -addr :8443 -allow spiffe://b.broker.test/ns/mtls-demo/sa/mtls-client
//	mtls-demo call    -url https://10.0.0.1:30444/ -server spiffe://a.broker.test/ns/mtls-demo/sa/mtls-server
//	mtls-demo intrude -url https://10.0.0.1:30444/
//
// call and intrude print one JSON line with their result and exit 0 only on the expected outcome
// (call: an answer over mTLS; intrude: the server refused the handshake).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: mtls-demo serve|call|intrude [flags]")
		os.Exit(2)
	}
	mode, args := os.Args[1], os.Args[2:]
	var err error
	switch mode {
	case "serve":
		err = serve(args)
	case "call":
		err = call(args)
	case "intrude":
		err = intrude(args)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func source(ctx context.Context) (*workloadapi.X509Source, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return workloadapi.NewX509Source(ctx)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", ":8443", "listen address")
	allow := fs.String("allow", "", "the one client SPIFFE ID admitted")
	_ = fs.Parse(args)
	client, err := spiffeid.FromString(*allow)
	if err != nil {
		return fmt.Errorf("-allow: %w", err)
	}
	src, err := source(context.Background())
	if err != nil {
		return err
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	log.Printf("serving as %s on %s, admitting %s", svid.ID, *addr, client)
	tlsConf := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeID(client))
	srv := &http.Server{
		Addr:      *addr,
		TLSConfig: tlsConf,
		ErrorLog:  log.New(os.Stderr, "refused: ", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, _ := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
			own, _ := src.GetX509SVID()
			fmt.Fprintf(w, "hello %s, this is %s\n", peer, own.ID)
		}),
	}
	return srv.ListenAndServeTLS("", "")
}

func call(args []string) error {
	fs := flag.NewFlagSet("call", flag.ExitOnError)
	target := fs.String("url", "", "server URL")
	server := fs.String("server", "", "the server's expected SPIFFE ID")
	wait := fs.Duration("wait", 2*time.Minute, "keep trying this long (the federated bundle may still be on its way)")
	_ = fs.Parse(args)
	id, err := spiffeid.FromString(*server)
	if err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	src, err := source(context.Background())
	if err != nil {
		return err
	}
	own, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(id))},
	}
	deadline := time.Now().Add(*wait)
	for {
		resp, err := client.Get(*target)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return emit(map[string]any{"mtls": "ok", "client": own.ID.String(), "status": resp.StatusCode, "body": string(body)}, resp.StatusCode == 200)
		}
		if time.Now().After(deadline) {
			return emit(map[string]any{"mtls": "failed", "client": own.ID.String(), "error": err.Error()}, false)
		}
		log.Printf("not yet: %v", err)
		time.Sleep(2 * time.Second)
	}
}

// intrude presents an X509-SVID of intruder.test, signed by a CA it made itself, and does not check
// the server: the question is only whether the server admits it.
func intrude(args []string) error {
	fs := flag.NewFlagSet("intrude", flag.ExitOnError)
	target := fs.String("url", "", "server URL")
	_ = fs.Parse(args)
	u, err := url.Parse(*target)
	if err != nil {
		return err
	}
	cert, err := selfIssuedSVID("spiffe://intruder.test/ns/mtls-demo/sa/mtls-client")
	if err != nil {
		return err
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // the intruder does not care who the server is
		MinVersion:         tls.VersionTLS12,
	})
	if err == nil {
		// TLS 1.3: the server's verdict on the client certificate arrives with the first read.
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.Host)
		if err == nil {
			var got []byte
			got, err = io.ReadAll(conn)
			if err == nil && len(got) > 0 {
				conn.Close()
				return emit(map[string]any{"intruder": "admitted", "answer": string(got)}, false)
			}
		}
		conn.Close()
	}
	msg := "connection closed"
	if err != nil {
		msg = err.Error()
	}
	return emit(map[string]any{"intruder": "refused", "error": msg}, true)
}

func selfIssuedSVID(id string) (tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"intruder"}},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "intruder.test"}},
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	u, _ := url.Parse(id)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{u},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}, nil
}

func emit(v map[string]any, ok bool) error {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
	if !ok {
		os.Exit(1)
	}
	return nil
}
