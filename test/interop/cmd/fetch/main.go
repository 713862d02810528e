// Command fetch fetches a trust domain's bundle from a SPIFFE bundle endpoint with go-spiffe v2's
// federation.FetchBundle — the real client code SPIFFE workloads use — and prints what it got as
// one JSON object on stdout:
//
//	{"trust_domain": "...", "bundle": <the bundle re-marshalled by go-spiffe in SPIFFE format>,
//	 "sequence": "<uint64>" | null, "refresh_hint_seconds": <n> | null,
//	 "x509_authorities": ["<base64 DER>", ...], "jwt_authorities": {"<kid>": "<base64 PKIX>"}}
//
// Profiles (SPIFFE Federation §5.2):
//
//	fetch -trustDomain td -url https://... -profile https_spiffe -endpointID spiffe://td/x -bundle b.json
//	fetch -trustDomain td -url https://... -profile https_web -caFile ca.pem
//
// -bundle is the SPIFFE bundle (JSON) of the endpoint ID's trust domain used to authenticate the
// server; -caFile holds PEM roots used instead of the system ones. Exit status 1 on any error,
// with the error on stderr.
package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type output struct {
	TrustDomain        string            `json:"trust_domain"`
	Bundle             json.RawMessage   `json:"bundle"`
	Sequence           *string           `json:"sequence"`
	RefreshHintSeconds *int64            `json:"refresh_hint_seconds"`
	X509Authorities    []string          `json:"x509_authorities"`
	JWTAuthorities     map[string]string `json:"jwt_authorities"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		os.Exit(1)
	}
}

func run() error {
	tdName := flag.String("trustDomain", "", "trust domain whose bundle is fetched")
	url := flag.String("url", "", "bundle endpoint URL")
	profile := flag.String("profile", "https_spiffe", "https_spiffe or https_web")
	endpointID := flag.String("endpointID", "", "https_spiffe: SPIFFE ID the server must present")
	bundlePath := flag.String("bundle", "", "https_spiffe: SPIFFE bundle of the endpoint ID's trust domain")
	caFile := flag.String("caFile", "", "https_web: PEM roots to trust instead of the system roots")
	timeout := flag.Duration("timeout", 10*time.Second, "overall deadline")
	flag.Parse()

	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		return fmt.Errorf("-trustDomain: %w", err)
	}
	var opt federation.FetchOption
	switch *profile {
	case "https_spiffe":
		id, err := spiffeid.FromString(*endpointID)
		if err != nil {
			return fmt.Errorf("-endpointID: %w", err)
		}
		auth, err := spiffebundle.Load(id.TrustDomain(), *bundlePath)
		if err != nil {
			return fmt.Errorf("-bundle: %w", err)
		}
		opt = federation.WithSPIFFEAuth(auth, id)
	case "https_web":
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("-caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-caFile: no PEM certificate in %s", *caFile)
		}
		opt = federation.WithWebPKIRoots(pool)
	default:
		return fmt.Errorf("-profile: unknown profile %q", *profile)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	b, err := federation.FetchBundle(ctx, td, *url, opt)
	if err != nil {
		return err
	}

	doc, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	out := output{
		TrustDomain:     td.Name(),
		Bundle:          doc,
		X509Authorities: []string{},
		JWTAuthorities:  map[string]string{},
	}
	if seq, ok := b.SequenceNumber(); ok {
		s := fmt.Sprintf("%d", seq)
		out.Sequence = &s
	}
	if hint, ok := b.RefreshHint(); ok {
		secs := int64(hint / time.Second)
		out.RefreshHintSeconds = &secs
	}
	for _, c := range b.X509Authorities() {
		out.X509Authorities = append(out.X509Authorities, base64.StdEncoding.EncodeToString(c.Raw))
	}
	for kid, key := range b.JWTAuthorities() {
		der, err := x509.MarshalPKIXPublicKey(key)
		if err != nil {
			return fmt.Errorf("JWT authority %q: %w", kid, err)
		}
		out.JWTAuthorities[kid] = base64.StdEncoding.EncodeToString(der)
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out)
}
