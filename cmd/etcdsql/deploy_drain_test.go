package main

import (
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Kubernetes stops a pod by running its preStop hook, then SIGTERM, then
// SIGKILL once terminationGracePeriodSeconds have passed since the start:
// the grace period must cover the pause and the whole drain, readiness
// must follow /health (503 while draining), and voluntary disruptions
// must take one member at a time.
func TestDeployKubernetesDrain(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/etcdsql.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type container struct {
		Args           []string `yaml:"args"`
		ReadinessProbe struct {
			HTTPGet struct {
				Path string `yaml:"path"`
			} `yaml:"httpGet"`
		} `yaml:"readinessProbe"`
		Lifecycle struct {
			PreStop struct {
				Exec struct {
					Command []string `yaml:"command"`
				} `yaml:"exec"`
			} `yaml:"preStop"`
		} `yaml:"lifecycle"`
	}
	var grace, pause time.Duration
	var drain time.Duration
	var pdb string
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				MaxUnavailable any `yaml:"maxUnavailable"`
				Template       struct {
					Spec struct {
						Grace      int         `yaml:"terminationGracePeriodSeconds"`
						Containers []container `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "PodDisruptionBudget":
			pdb = strings.TrimSpace(yamlScalar(doc.Spec.MaxUnavailable))
		case "StatefulSet":
			c := doc.Spec.Template.Spec.Containers[0]
			grace = time.Duration(doc.Spec.Template.Spec.Grace) * time.Second
			if p := c.ReadinessProbe.HTTPGet.Path; p != "/health" {
				t.Errorf("readiness probe on %q, want /health", p)
			}
			if cmd := c.Lifecycle.PreStop.Exec.Command; len(cmd) == 2 && cmd[0] == "sleep" {
				n, err := strconv.Atoi(cmd[1])
				if err != nil {
					t.Fatalf("preStop %v: %v", cmd, err)
				}
				pause = time.Duration(n) * time.Second
			} else {
				t.Errorf("preStop %v, want a pause (sleep N)", cmd)
			}
			t.Setenv("ETCDSQL_MYSQL_DSN", "u:p@tcp(db:3306)/etcdsql")
			o, err := parse(c.Args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			drain = o.drainTimeout
		}
	}
	if pdb != "1" {
		t.Errorf("PodDisruptionBudget maxUnavailable %q, want 1", pdb)
	}
	if grace <= pause+drain {
		t.Errorf("terminationGracePeriodSeconds %v does not cover the preStop pause %v and --drain-timeout %v", grace, pause, drain)
	}
}
