// Command serve runs a SPIFFE bundle endpoint built on go-spiffe's federation.NewHandler, so the
// broker's fetcher is tested against the reference implementation of the server side.
//
// It serves the SPIFFE bundle in -bundle (for -trust-domain) on every GET, over TLS per -profile:
//
//	https_spiffe: the X509-SVID in -svid (PEM chain, leaf first) with key -svid-key, via go-spiffe's
//	              tlsconfig.TLSServerConfig;
//	https_web:    the certificate chain in -cert with key -key (a plain web server certificate).
//
// Once listening it prints one line, "listening https://<host:port>", then serves until it is
// killed. The bundle file is re-read on every request, so a test can rotate it in place.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// fileSource loads the bundle file on each lookup.
type fileSource struct {
	td   spiffeid.TrustDomain
	path string
}

func (s fileSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != s.td {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	return spiffebundle.Load(s.td, s.path)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	tdName := flag.String("trust-domain", "", "trust domain of the served bundle")
	bundlePath := flag.String("bundle", "", "SPIFFE bundle file to serve")
	profile := flag.String("profile", "https_spiffe", "https_spiffe or https_web")
	svidPath := flag.String("svid", "", "https_spiffe: X509-SVID PEM chain, leaf first")
	svidKeyPath := flag.String("svid-key", "", "https_spiffe: X509-SVID private key PEM")
	certPath := flag.String("cert", "", "https_web: certificate chain PEM")
	keyPath := flag.String("key", "", "https_web: private key PEM")
	flag.Parse()

	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		return fmt.Errorf("-trust-domain: %w", err)
	}
	if *bundlePath == "" {
		return errors.New("-bundle is required")
	}
	if _, err := spiffebundle.Load(td, *bundlePath); err != nil {
		return fmt.Errorf("-bundle: %w", err)
	}
	handler, err := federation.NewHandler(td, fileSource{td: td, path: *bundlePath})
	if err != nil {
		return err
	}

	var config *tls.Config
	switch *profile {
	case "https_spiffe":
		svid, err := x509svid.Load(*svidPath, *svidKeyPath)
		if err != nil {
			return fmt.Errorf("-svid/-svid-key: %w", err)
		}
		config = tlsconfig.TLSServerConfig(svid)
	case "https_web":
		cert, err := tls.LoadX509KeyPair(*certPath, *keyPath)
		if err != nil {
			return fmt.Errorf("-cert/-key: %w", err)
		}
		config = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	default:
		return fmt.Errorf("-profile must be https_spiffe or https_web, got %q", *profile)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening https://%s\n", ln.Addr().String())
	server := &http.Server{Handler: handler, TLSConfig: config}
	return server.Serve(tls.NewListener(ln, config))
}
