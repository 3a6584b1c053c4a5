package sinkrouter

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The header's ABI as sr_abi_layout_dump prints it must be exactly what the binding knows:
// same struct sizes and field offsets, same enum values, the same set of functions.
func TestABILayoutMatchesHeader(t *testing.T) {
	dump := os.Getenv("SR_ABI_LAYOUT_DUMP")
	if dump == "" {
		t.Fatal("SR_ABI_LAYOUT_DUMP is not set: point it at build/<preset>/bindings/sr_abi_layout_dump")
	}
	output, err := exec.Command(dump).Output()
	if err != nil {
		t.Fatalf("running %s: %v", dump, err)
	}
	header := facts(strings.Split(strings.TrimSpace(string(output)), "\n"))
	binding := facts(bindingABI())
	if len(header) < 50 {
		t.Fatalf("%s printed only %d facts", dump, len(header))
	}
	for key, value := range header {
		got, ok := binding[key]
		switch {
		case !ok:
			t.Errorf("the header has %q %s, which the binding does not mirror", key, value)
		case got != value:
			t.Errorf("%s: header %s, binding %s", key, value, got)
		}
	}
	for key, value := range binding {
		if _, ok := header[key]; !ok {
			t.Errorf("the binding has %q %s, which the header does not", key, value)
		}
	}
}

// facts maps "kind name" to its value ("" for functions): "field sr_kv_io.dtype" -> "8".
func facts(lines []string) map[string]string {
	m := make(map[string]string, len(lines))
	for _, line := range lines {
		words := strings.Fields(line)
		switch len(words) {
		case 2:
			m[words[0]+" "+words[1]] = ""
		case 3:
			m[words[0]+" "+words[1]] = words[2]
		default: // kept, so that a line neither side can read shows up as a difference
			m["unreadable "+line] = ""
		}
	}
	return m
}
