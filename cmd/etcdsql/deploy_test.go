package main

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

// The flags in deploy/ must be flags etcdsql accepts, forming a valid
// member configuration: a typo there would only show on someone's cluster.
func TestDeployFilesUseValidFlags(t *testing.T) {
	keyFile := t.TempDir() + "/cluster.key"
	if err := writeFile(keyFile, "0123456789abcdef0123456789abcdef\n"); err != nil {
		t.Fatal(err)
	}
	check := func(where string, args []string) {
		t.Helper()
		o, err := parse(args, io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		// Members must authenticate each other; the key file is the
		// deployment's secret, so a key of the test's stands in for it.
		if o.clusterKeyFile == "" {
			t.Fatalf("%s: no --cluster-key-file", where)
		}
		o.clusterKeyFile = keyFile
		if _, err := memberConfig(o, slog.New(slog.DiscardHandler), prometheus.NewRegistry()); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if o.gossipAddr == "" || o.bootstrapExpect != 3 {
			t.Fatalf("%s: not a three-member cluster: %+v", where, o)
		}
	}

	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	readYAML(t, "../../deploy/compose/docker-compose.yml", &compose)
	members := 0
	for name, svc := range compose.Services {
		if strings.HasPrefix(name, "etcdsql") {
			check("compose "+name, svc.Command)
			members++
		}
	}
	if members != 3 {
		t.Fatalf("compose: %d etcdsql services", members)
	}

	b, err := os.ReadFile("../../deploy/kubernetes/etcdsql.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Args []string `yaml:"args"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("kubernetes: %v", err)
		}
		if doc.Kind == "StatefulSet" {
			t.Setenv("ETCDSQL_MYSQL_DSN", "u:p@tcp(db:3306)/etcdsql")
			check("kubernetes", doc.Spec.Template.Spec.Containers[0].Args)
			found = true
		}
	}
	if !found {
		t.Fatal("kubernetes: no StatefulSet")
	}

	var apisix map[string]any
	readYAML(t, "../../deploy/compose/apisix-config.yaml", &apisix)
}

// The HAProxy configuration in deploy/ is one HAProxy accepts.
func TestDeployHAProxyConfig(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (apt-get install haproxy): %v", err)
	}
	out, err := exec.Command(bin, "-c", "-f", "../../deploy/haproxy/haproxy.cfg").CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
