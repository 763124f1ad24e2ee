// Package workload holds what the Go client programs of tests/test_go_sdks.py share: checks
// that end the program at the first mismatch, the bodies they write, the summary they print.
package workload

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

var checks = 0

// Check ends the program with the message unless ok.
func Check(ok bool, format string, args ...interface{}) {
	if !ok {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(1)
	}
	checks++
}

// Must ends the program if err is not nil.
func Must(err error, what string) {
	Check(err == nil, "%s: %v", what, err)
}

// Data is n bytes of a fixed pattern (seed varies it).
func Data(n int, seed int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte((i*7 + seed) % 251)
	}
	return out
}

// MD5Hex is the hex MD5 of b: a single PUT's ETag, unquoted.
func MD5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// Done prints {"ok": true, "checks": n}.
func Done() {
	out, _ := json.Marshal(map[string]interface{}{"ok": true, "checks": checks})
	fmt.Println(string(out))
}

// QuotedMD5 is a single PUT's ETag as S3 shows it, in quotes.
func QuotedMD5(b []byte) string {
	return "\"" + MD5Hex(b) + "\""
}
