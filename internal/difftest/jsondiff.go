package difftest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strconv"
	"strings"
)

// masked replaces the value of every header field that legitimately differs
// between two clusters. Presence is still compared: a subject that omits
// cluster_id fails even though the value itself is not compared.
const masked = "<masked>"

// maskedHeaderFields are the header fields whose values differ between any
// two clusters and are therefore masked wherever a "header" object appears.
var maskedHeaderFields = []string{"cluster_id", "member_id", "raft_term"}

// absent is the type of Absent.
type absent struct{}

// Absent is passed to Conn.Want to require that a path is not present.
var Absent = absent{}

// ParseJSON decodes one JSON document into the generic form used for
// comparison: map[string]any, []any, string, bool, nil and json.Number
// (numbers keep their textual form, so "5" and 5 stay distinguishable).
func ParseJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("difftest: decode json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("difftest: decode json: trailing data after the first value")
	}
	return v, nil
}

// parseJSONSeq decodes a sequence of concatenated or newline-separated JSON
// values, as found in a streamed gateway body.
func parseJSONSeq(b []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out []any
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("difftest: decode json value %d: %w", len(out), err)
		}
		out = append(out, v)
	}
}

// toGeneric converts an arbitrary Go value to the generic JSON form by a
// round trip through encoding/json.
func toGeneric(v any) (any, error) {
	if _, ok := v.(absent); ok {
		return v, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("difftest: encode %T: %w", v, err)
	}
	return ParseJSON(b)
}

// maskHeaders replaces, in place, the values of maskedHeaderFields in every
// object stored under a "header" key at any depth, and returns v.
func maskHeaders(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if h, ok := child.(map[string]any); ok && k == "header" {
				for _, f := range maskedHeaderFields {
					if _, present := h[f]; present {
						h[f] = masked
					}
				}
			}
			maskHeaders(child)
		}
	case []any:
		for _, child := range x {
			maskHeaders(child)
		}
	}
	return v
}

// DiffOptions tunes Diff.
type DiffOptions struct {
	// Tolerance maps an exact path (as printed in diffs) to the largest
	// allowed absolute difference between two integers at that path. The
	// integers may be JSON numbers or decimal strings; both sides must use
	// the same JSON type.
	Tolerance map[string]int64
}

// Difference is one mismatch found by Diff.
type Difference struct {
	// Path locates the mismatch, e.g. "kvs[1].mod_revision"; "" is the root.
	Path string
	// Detail shows both sides, e.g. `ref "5" subj "6"`.
	Detail string
}

// String renders the difference as `path: detail`.
func (d Difference) String() string {
	return displayPath(d.Path) + ": " + d.Detail
}

// Diff compares two generic JSON values and returns every difference, for
// example `kvs[1].mod_revision: ref "5" subj "6"`. A nil result means equal.
func Diff(ref, subj any, opts DiffOptions) []Difference {
	var out []Difference
	diffValue("", ref, subj, opts, &out)
	return out
}

func diffValue(path string, ref, subj any, opts DiffOptions, out *[]Difference) {
	switch r := ref.(type) {
	case map[string]any:
		if s, ok := subj.(map[string]any); ok {
			diffObject(path, r, s, opts, out)
			return
		}
	case []any:
		if s, ok := subj.([]any); ok {
			diffArray(path, r, s, opts, out)
			return
		}
	}
	if sameScalar(ref, subj) || withinTolerance(path, ref, subj, opts) {
		return
	}
	*out = append(*out, Difference{path, fmt.Sprintf("ref %s subj %s", Compact(ref), Compact(subj))})
}

func diffObject(path string, ref, subj map[string]any, opts DiffOptions, out *[]Difference) {
	for _, k := range unionKeys(ref, subj) {
		p := joinKey(path, k)
		rv, rok := ref[k]
		sv, sok := subj[k]
		switch {
		case rok && !sok:
			*out = append(*out, Difference{p, fmt.Sprintf("ref %s subj absent", Compact(rv))})
		case !rok && sok:
			*out = append(*out, Difference{p, fmt.Sprintf("ref absent subj %s", Compact(sv))})
		default:
			diffValue(p, rv, sv, opts, out)
		}
	}
}

func diffArray(path string, ref, subj []any, opts DiffOptions, out *[]Difference) {
	if len(ref) != len(subj) {
		*out = append(*out, Difference{path, fmt.Sprintf("ref has %d elements, subj has %d", len(ref), len(subj))})
	}
	for i := 0; i < len(ref) || i < len(subj); i++ {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case i >= len(subj):
			*out = append(*out, Difference{p, fmt.Sprintf("ref %s subj absent", Compact(ref[i]))})
		case i >= len(ref):
			*out = append(*out, Difference{p, fmt.Sprintf("ref absent subj %s", Compact(subj[i]))})
		default:
			diffValue(p, ref[i], subj[i], opts, out)
		}
	}
}

// sameScalar reports whether two generic values are identical, including
// their JSON type. Containers reaching here have mismatched types.
func sameScalar(a, b any) bool {
	switch a.(type) {
	case map[string]any, []any:
		return false
	}
	switch b.(type) {
	case map[string]any, []any:
		return false
	}
	return a == b
}

// withinTolerance applies DiffOptions.Tolerance to two integers at path.
func withinTolerance(path string, ref, subj any, opts DiffOptions) bool {
	tol, ok := opts.Tolerance[path]
	if !ok {
		return false
	}
	rs, rIsString := ref.(string)
	ss, sIsString := subj.(string)
	if rIsString != sIsString {
		return false
	}
	if !rIsString {
		rn, rok := ref.(json.Number)
		sn, sok := subj.(json.Number)
		if !rok || !sok {
			return false
		}
		rs, ss = rn.String(), sn.String()
	}
	ri, err1 := strconv.ParseInt(rs, 10, 64)
	si, err2 := strconv.ParseInt(ss, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	d := ri - si
	return d <= tol && -d <= tol
}

func unionKeys(a, b map[string]any) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func displayPath(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

// Compact renders a generic value as compact JSON, truncated for messages.
func Compact(v any) string {
	const maxLen = 300
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%v", v)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > maxLen {
		return string(b[:maxLen]) + fmt.Sprintf("…(%d bytes)", len(b))
	}
	return string(b)
}

// Lookup returns the value at path (the syntax Diff prints, e.g.
// "body.kvs[1].key") inside a generic value, and whether it exists.
func Lookup(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	for _, seg := range strings.Split(path, ".") {
		name, idx := splitIndexes(seg)
		if name != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[name]; !ok {
				return nil, false
			}
		}
		for _, i := range idx {
			a, ok := v.([]any)
			if !ok || i < 0 || i >= len(a) {
				return nil, false
			}
			v = a[i]
		}
	}
	return v, true
}

// splitIndexes splits "kvs[1][2]" into "kvs" and [1 2]. Malformed indexes
// become -1, which never matches.
func splitIndexes(seg string) (string, []int) {
	open := strings.IndexByte(seg, '[')
	if open < 0 {
		return seg, nil
	}
	name := seg[:open]
	var idx []int
	for _, part := range strings.Split(seg[open:], "[")[1:] {
		n, err := strconv.Atoi(strings.TrimSuffix(part, "]"))
		if err != nil || !strings.HasSuffix(part, "]") {
			n = -1
		}
		idx = append(idx, n)
	}
	return name, idx
}

// asInt converts a generic JSON integer (number or decimal string) to int64.
func asInt(v any) (int64, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	default:
		return 0, false
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}

// revisionFields are the JSON fields that hold store revisions.
var revisionFields = map[string]bool{
	"revision":         true,
	"create_revision":  true,
	"mod_revision":     true,
	"compact_revision": true,
}

// rebaseRevisions returns a copy of v in which every integer string in a
// revisionFields field is replaced by its offset from base ("+3", "-1"), so
// that two stores whose revision counters diverged before a case can still
// be compared on what the case itself did.
func rebaseRevisions(v any, base int64) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, child := range x {
			if s, ok := child.(string); ok && revisionFields[k] {
				if n, err := strconv.ParseInt(s, 10, 64); err == nil {
					out[k] = fmt.Sprintf("%+d", n-base)
					continue
				}
			}
			out[k] = rebaseRevisions(child, base)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, child := range x {
			out[i] = rebaseRevisions(child, base)
		}
		return out
	default:
		return v
	}
}
