package store

import (
	"strings"
	"testing"
)

// splitFuzzKey turns fuzz input into a key: components separated by '/'.
func splitFuzzKey(s string) Key { return Key(strings.Split(s, "/")) }

// FuzzMemKey checks MemStore's key encoding: it decodes to the key it
// encodes, its string order is Key.Compare order, and a string prefix of
// encodings is exactly a component-wise prefix.
func FuzzMemKey(f *testing.F) {
	f.Add("doc/snapshot/abc", "doc2/snapshot/abc")
	f.Add("a/b", "a/b/c")
	f.Add("a/bc", "a/b")
	f.Add("ab", "a/b")
	f.Add("storage-adapter-id", "\xff/\x01")
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := splitFuzzKey(a), splitFuzzKey(b)
		if ka.Validate() != nil || kb.Validate() != nil {
			return
		}
		ea, eb := memKey(ka), memKey(kb)
		if got := memDecode(ea); got.Compare(ka) != 0 {
			t.Fatalf("decode(encode(%q)) = %q", []string(ka), []string(got))
		}
		if c1, c2 := ka.Compare(kb), strings.Compare(ea, eb); c1 != c2 {
			t.Fatalf("Compare(%q, %q) = %d but encodings compare %d", []string(ka), []string(kb), c1, c2)
		}
		if p1, p2 := ka.HasPrefix(kb), strings.HasPrefix(ea, eb); p1 != p2 {
			t.Fatalf("HasPrefix(%q, %q) = %v but encodings say %v", []string(ka), []string(kb), p1, p2)
		}
	})
}
