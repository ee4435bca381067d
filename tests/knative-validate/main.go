// Command knative-validate runs Knative's own defaulting and validation
// (SetDefaults then Validate, as Knative's admission webhooks do on create) on
// Knative manifests, so tests can prove that what Rouse writes is accepted by
// Knative without running Knative's webhooks.
//
// Usage: knative-validate [FILE...]   (multi-document YAML or JSON; stdin when no FILE)
//
// Knative's warnings (e.g. an insecure security context) are printed to stderr
// but do not fail; its errors do.
//
// Exit status: 0 when every object is valid, 1 on the first invalid object
// (Knative's message on stderr, naming the object), 2 on unreadable input or a
// kind this tool does not know.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	"knative.dev/pkg/apis"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

// resource is what Knative's webhooks require of a type: defaulting and validation.
type resource interface {
	apis.Defaultable
	apis.Validatable
}

// newResource returns an empty typed object for apiVersion/kind, or nil if unknown.
func newResource(apiVersion, kind string) resource {
	switch apiVersion + "/" + kind {
	case "serving.knative.dev/v1/Service":
		return &servingv1.Service{}
	case "serving.knative.dev/v1/Configuration":
		return &servingv1.Configuration{}
	case "serving.knative.dev/v1/Route":
		return &servingv1.Route{}
	case "eventing.knative.dev/v1/Trigger":
		return &eventingv1.Trigger{}
	case "eventing.knative.dev/v1/Broker":
		return &eventingv1.Broker{}
	case "sources.knative.dev/v1/PingSource":
		return &sourcesv1.PingSource{}
	}
	return nil
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (h header) String() string {
	name := h.Metadata.Name
	if h.Metadata.Namespace != "" {
		name = h.Metadata.Namespace + "/" + name
	}
	return fmt.Sprintf("%s %s %q", h.APIVersion, h.Kind, name)
}

// errInvalid marks an object Knative refuses (exit 1), as opposed to bad input (exit 2).
var errInvalid = errors.New("invalid")

// check defaults and validates one JSON document the way Knative's webhooks do on
// create: error-level findings refuse the object, warning-level ones are returned
// (the webhooks send those back as admission warnings).
func check(ctx context.Context, doc []byte, where string) (string, string, error) {
	var h header
	if err := json.Unmarshal(doc, &h); err != nil {
		return "", "", fmt.Errorf("%s: not a Kubernetes object: %v", where, err)
	}
	obj := newResource(h.APIVersion, h.Kind)
	if obj == nil {
		return "", "", fmt.Errorf("%s: %s is not a kind knative-validate knows (Service, Configuration, Route, Trigger, Broker, PingSource)", where, h)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields() // as Knative's webhooks decode
	if err := dec.Decode(obj); err != nil {
		return "", "", fmt.Errorf("%w: %s: %s: %v", errInvalid, where, h, err)
	}
	obj.SetDefaults(ctx)
	ferr := obj.Validate(ctx)
	if errs := ferr.Filter(apis.ErrorLevel); errs != nil {
		return "", "", fmt.Errorf("%w: %s: %s: %s", errInvalid, where, h, errs.Error())
	}
	warnings := ""
	if warns := ferr.Filter(apis.WarningLevel); warns != nil {
		warnings = warns.Error()
	}
	return h.String(), warnings, nil
}

// documents splits multi-document YAML (or JSON) into JSON documents, skipping empty ones.
func documents(r io.Reader) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(strings.TrimSpace(string(raw))) == 0 {
			continue
		}
		doc, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, err
		}
		if string(doc) == "null" {
			continue
		}
		docs = append(docs, doc)
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx := apis.WithinCreate(context.Background())
	type source struct {
		name string
		r    io.Reader
	}
	var sources []source
	if len(args) == 0 {
		sources = append(sources, source{"<stdin>", stdin})
	}
	for _, path := range args {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sources = append(sources, source{path, f})
	}
	count := 0
	for _, src := range sources {
		docs, err := documents(src.r)
		if err != nil {
			return fmt.Errorf("%s: cannot read YAML: %v", src.name, err)
		}
		for i, doc := range docs {
			what, warnings, err := check(ctx, doc, fmt.Sprintf("%s document %d", src.name, i+1))
			if err != nil {
				return err
			}
			if warnings != "" {
				fmt.Fprintf(stderr, "knative-validate: warning: %s: %s\n", what, warnings)
			}
			fmt.Fprintf(stdout, "valid: %s\n", what)
			count++
		}
	}
	if count == 0 {
		return errors.New("no objects found in the input")
	}
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "knative-validate:", err)
		if errors.Is(err, errInvalid) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}
