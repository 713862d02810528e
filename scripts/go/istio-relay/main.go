// Command istio-relay fetches SPIFFE bundles the way an Istio control plane does for MeshConfig
// `caCertificates[].spiffeBundleUrl`: with istio.io/istio/pkg/spiffe's own
// RetrieveSpiffeBundleRootCerts (https only, WebPKI server authentication against the given
// roots, every x509-svid entry with exactly one x5c certificate, at least one such entry). It
// prints one JSON object on stdout: {"<trust domain>": ["<base64 DER root>", ...], ...}.
//
// Usage:
//
//	istio-relay -caFile ca.pem -retry 0s td1=https://host/bundles/td1 [td2=URL ...]
//
// -version prints the istio module version. Exit status 1 on any error, with Istio's error text
// on stderr.
package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"istio.io/istio/pkg/spiffe"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "istio-relay:", err)
		os.Exit(1)
	}
}

func run() error {
	caFile := flag.String("caFile", "", "PEM roots that authenticate the bundle endpoint")
	retry := flag.Duration("retry", 0, "how long Istio keeps retrying a failed fetch")
	version := flag.Bool("version", false, "print the istio module version and exit")
	flag.Parse()

	if *version {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, m := range info.Deps {
				if m.Path == "istio.io/istio" {
					fmt.Println(m.Version)
					return nil
				}
			}
		}
		return fmt.Errorf("no build info")
	}

	config := map[string]string{}
	for _, arg := range flag.Args() {
		td, url, ok := strings.Cut(arg, "=")
		if !ok {
			return fmt.Errorf("argument %q is not <trust domain>=<url>", arg)
		}
		config[td] = url
	}
	pool := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("-caFile: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-caFile: no PEM certificate in %s", *caFile)
		}
	}
	got, err := spiffe.RetrieveSpiffeBundleRootCerts(config, pool, *retry+time.Nanosecond)
	if err != nil {
		return err
	}
	out := map[string][]string{}
	for td, certs := range got {
		for _, c := range certs {
			out[td] = append(out[td], base64.StdEncoding.EncodeToString(c.Raw))
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
