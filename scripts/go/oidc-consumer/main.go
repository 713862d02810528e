// Command oidc-consumer is a relying party built on github.com/coreos/go-oidc/v3, the OIDC client
// library Go services use: it discovers an issuer (GET <issuer>/.well-known/openid-configuration,
// which go-oidc checks names the same issuer), then verifies a JWT through the discovered jwks_uri
// exactly as go-oidc's IDTokenVerifier does (signature with a key of the JWKS, alg among the
// advertised ones, iss, aud, exp). It prints one JSON object on stdout:
//
//	{"issuer": "...", "jwks_uri": "...", "algs": [...], "subject": "...", "audience": [...]}
//
// Usage:
//
//	oidc-consumer -issuer https://oidc.example.test -audience aud -token <jwt> \
//	    [-caFile ca.pem] [-connect 127.0.0.1:8443] [-discovery https://broker/peers/td]
//
// -discovery fetches the provider metadata under that base URL instead of the issuer (go-oidc's
// InsecureIssuerURLContext, what relying parties with a separate discovery or JWKS URL do, e.g.
// for a partner's JWT-SVIDs relayed by the broker); the discovered issuer must still be -issuer
// and equal the token's iss.
//
// -connect dials that address for every request whatever the URL's host (so an issuer with a
// public name can be tested on loopback; TLS still checks the issuer's name). -version prints the
// go-oidc version. Exit status 1 on any error, with the error on stderr.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

type output struct {
	Issuer   string   `json:"issuer"`
	JWKSURI  string   `json:"jwks_uri"`
	Algs     []string `json:"algs"`
	Subject  string   `json:"subject"`
	Audience []string `json:"audience"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "oidc-consumer:", err)
		os.Exit(1)
	}
}

func run() error {
	issuer := flag.String("issuer", "", "issuer URL to discover")
	audience := flag.String("audience", "", "audience (client ID) the token must name")
	token := flag.String("token", "", "the JWT to verify")
	caFile := flag.String("caFile", "", "PEM roots to trust instead of the system roots")
	connect := flag.String("connect", "", "host:port to dial instead of the URL's host")
	discovery := flag.String("discovery", "", "base URL of the provider metadata, when not the issuer")
	timeout := flag.Duration("timeout", 10*time.Second, "overall deadline")
	version := flag.Bool("version", false, "print the go-oidc version and exit")
	flag.Parse()

	if *version {
		info, ok := debug.ReadBuildInfo()
		if ok {
			for _, m := range info.Deps {
				if m.Path == "github.com/coreos/go-oidc/v3" {
					fmt.Println(m.Version)
					return nil
				}
			}
		}
		return fmt.Errorf("no build info")
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("-caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-caFile: no PEM certificate in %s", *caFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if *connect != "" {
		dialer := &net.Dialer{Timeout: 5 * time.Second}
		transport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, *connect)
		}
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx = oidc.ClientContext(ctx, client)

	base := *issuer
	if *discovery != "" {
		ctx = oidc.InsecureIssuerURLContext(ctx, *issuer)
		base = *discovery
	}
	provider, err := oidc.NewProvider(ctx, base)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	var claims struct {
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&claims); err != nil {
		return fmt.Errorf("discovery document: %w", err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: *audience})
	idToken, err := verifier.Verify(ctx, *token)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	out := output{
		Issuer:   idToken.Issuer,
		JWKSURI:  claims.JWKSURI,
		Algs:     claims.Algs,
		Subject:  idToken.Subject,
		Audience: idToken.Audience,
	}
	if out.Algs == nil {
		out.Algs = []string{}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
