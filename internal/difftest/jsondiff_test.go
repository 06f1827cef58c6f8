package difftest

import (
	"reflect"
	"testing"
)

func mustParse(t *testing.T, s string) any {
	t.Helper()
	v, err := ParseJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDiffReportsPaths(t *testing.T) {
	tests := []struct {
		name      string
		ref, subj string
		tolerance map[string]int64
		wantDiffs []string
	}{
		{name: "equal", ref: `{"a":"1","b":[1,2]}`, subj: `{"b":[1,2],"a":"1"}`},
		{
			name: "nested value", ref: `{"kvs":[{"mod_revision":"4"},{"mod_revision":"5"}]}`,
			subj:      `{"kvs":[{"mod_revision":"4"},{"mod_revision":"6"}]}`,
			wantDiffs: []string{`kvs[1].mod_revision: ref "5" subj "6"`},
		},
		{
			name: "absent field", ref: `{"header":{},"deleted":"1"}`, subj: `{"header":{}}`,
			wantDiffs: []string{`deleted: ref "1" subj absent`},
		},
		{
			name: "string versus number", ref: `{"count":"2"}`, subj: `{"count":2}`,
			wantDiffs: []string{`count: ref "2" subj 2`},
		},
		{
			name: "array length", ref: `{"kvs":[1,2]}`, subj: `{"kvs":[1]}`,
			wantDiffs: []string{`kvs: ref has 2 elements, subj has 1`, `kvs[1]: ref 2 subj absent`},
		},
		{
			name: "tolerance holds", ref: `{"TTL":"59"}`, subj: `{"TTL":"60"}`,
			tolerance: map[string]int64{"TTL": 1},
		},
		{
			name: "tolerance exceeded", ref: `{"TTL":"58"}`, subj: `{"TTL":"60"}`,
			tolerance: map[string]int64{"TTL": 1},
			wantDiffs: []string{`TTL: ref "58" subj "60"`},
		},
		{
			name: "tolerance keeps types", ref: `{"TTL":"60"}`, subj: `{"TTL":60}`,
			tolerance: map[string]int64{"TTL": 1},
			wantDiffs: []string{`TTL: ref "60" subj 60`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range Diff(mustParse(t, tt.ref), mustParse(t, tt.subj), DiffOptions{Tolerance: tt.tolerance}) {
				got = append(got, d.String())
			}
			if !reflect.DeepEqual(got, tt.wantDiffs) {
				t.Errorf("Diff = %q, want %q", got, tt.wantDiffs)
			}
		})
	}
}

func TestMaskHeaders(t *testing.T) {
	v := maskHeaders(mustParse(t, `{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"}},`+
		`"responses":[{"response_put":{"header":{"revision":"3"}}}]}`))
	want := mustParse(t, `{"result":{"header":{"cluster_id":"<masked>","member_id":"<masked>","revision":"3","raft_term":"<masked>"}},`+
		`"responses":[{"response_put":{"header":{"revision":"3"}}}]}`)
	if d := Diff(want, v, DiffOptions{}); d != nil {
		t.Errorf("maskHeaders: %v", d)
	}
}

func TestLookup(t *testing.T) {
	v := mustParse(t, `{"body":{"kvs":[{"key":"a"},{"key":"b"}]},"m":[[1,2]]}`)
	for path, want := range map[string]any{"body.kvs[1].key": "b", "m[0][1]": mustParse(t, "2")} {
		got, ok := Lookup(v, path)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("Lookup(%q) = %v, %v; want %v", path, got, ok, want)
		}
	}
	for _, path := range []string{"body.kvs[2].key", "body.nope", "m[0][x]", "body.kvs.key"} {
		if got, ok := Lookup(v, path); ok {
			t.Errorf("Lookup(%q) = %v, want absent", path, got)
		}
	}
}

func TestCompareTranscriptsLenient(t *testing.T) {
	ref := []*Obs{(&Obs{Label: "x", Value: mustParse(t, `{"status":400,"body":{"error":"a","code":3}}`)}).Lenient("body.error")}
	subj := []*Obs{{Label: "x", Value: mustParse(t, `{"status":400,"body":{"error":"b","code":3}}`)}}
	fails, notes := compareTranscripts(ref, subj)
	if len(fails) != 0 || len(notes) != 1 {
		t.Errorf("lenient text: fails %q notes %q; want 0 fails, 1 note", fails, notes)
	}
	subj[0].Value = mustParse(t, `{"status":500,"body":{"error":"b","code":3}}`)
	if fails, _ := compareTranscripts(ref, subj); len(fails) != 1 {
		t.Errorf("status difference: fails %q, want 1", fails)
	}
}

func TestSemverAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"3.4.0": true, "3.5.12": true, "4.0.0-rc1": true, "3.3.9": false, "3.4": false, "": false} {
		if got := semverAtLeast(v, [3]int{3, 4, 0}); got != want {
			t.Errorf("semverAtLeast(%q) = %v, want %v", v, got, want)
		}
	}
}
