// Command version prints the go-spiffe module version this interop module was built with, so
// test logs show exactly which real client and server code the broker was checked against.
package main

import (
	"fmt"
	"runtime/debug"

	_ "github.com/spiffe/go-spiffe/v2/spiffeid"
)

func main() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Println("unknown")
		return
	}
	for _, d := range info.Deps {
		if d.Path == "github.com/spiffe/go-spiffe/v2" {
			fmt.Println(d.Version)
			return
		}
	}
	fmt.Println("unknown")
}
