// Command envoycheck proves Envoy configuration files against Envoy's own
// API, as the meshkeeper e2e suite needs it: each file is converted from YAML
// to JSON, decoded strictly into Envoy's protobuf messages (an unknown field
// or an unknown `@type` is an error) and every message, including those
// packed in `Any` fields such as a filter's `typed_config`, must pass Envoy's
// validation rules (`ValidateAll`, generated from the API's annotations).
//
// Usage:
//
//	envoycheck [-bootstrap FILE] [DISCOVERY_FILE ...]
//
// A discovery file is what Envoy's `path_config_source` reads: a
// DiscoveryResponse whose `resources` are all of one type (listeners,
// clusters, route configurations, ...).
//
// Exit status: 0 when every file is valid, 1 when any is not (each problem
// is printed on stderr naming the file and the field), 2 for bad usage.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	// The types an `@type` may name: resources, and the extensions the
	// generated configuration uses or the traffic-model compiler will use.
	// Imported for their registration in the global type registry.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

func main() {
	bootstrap := flag.String("bootstrap", "", "an Envoy bootstrap file (YAML or JSON)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: envoycheck [-bootstrap FILE] [DISCOVERY_FILE ...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *bootstrap == "" && flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}

	var problems []string
	report := func(path string, errs []error) {
		for _, err := range errs {
			problems = append(problems, fmt.Sprintf("%s: %v", path, err))
		}
	}
	checked := 0
	if *bootstrap != "" {
		report(*bootstrap, checkBootstrap(*bootstrap))
		checked++
	}
	for _, path := range flag.Args() {
		report(path, checkDiscoveryFile(path))
		checked++
	}

	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "envoycheck:", p)
		}
		fmt.Fprintf(os.Stderr, "envoycheck: %d problem(s) in %d file(s)\n", len(problems), checked)
		os.Exit(1)
	}
	fmt.Printf("envoycheck: %d file(s) valid\n", checked)
}

func checkBootstrap(path string) []error {
	var b bootstrapv3.Bootstrap
	if err := decodeFile(path, &b); err != nil {
		return []error{err}
	}
	return validateTree(&b, "bootstrap")
}

func checkDiscoveryFile(path string) []error {
	var response discoveryv3.DiscoveryResponse
	if err := decodeFile(path, &response); err != nil {
		return []error{err}
	}
	var errs []error
	firstType := ""
	for i, packed := range response.GetResources() {
		where := fmt.Sprintf("resources[%d]", i)
		if firstType == "" {
			firstType = packed.GetTypeUrl()
		} else if packed.GetTypeUrl() != firstType {
			// Envoy reads one file per resource type.
			errs = append(errs, fmt.Errorf("%s: @type %q differs from the first resource's %q",
				where, packed.GetTypeUrl(), firstType))
		}
		resource, err := packed.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		errs = append(errs, validateTree(resource, where+describe(resource))...)
	}
	return errs
}

// describe names a resource by its type and `name` field, when it has one.
func describe(m proto.Message) string {
	msg := m.ProtoReflect()
	desc := msg.Descriptor()
	if field := desc.Fields().ByName("name"); field != nil && field.Kind() == protoreflect.StringKind {
		return fmt.Sprintf(" (%s %q)", desc.Name(), msg.Get(field).String())
	}
	return fmt.Sprintf(" (%s)", desc.Name())
}

// decodeFile reads YAML (or JSON) and decodes it strictly: unknown fields,
// unknown `@type`s and duplicate keys are errors.
func decodeFile(path string, into proto.Message) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	json, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(json, into); err != nil {
		return fmt.Errorf("does not decode as %s: %v%s", into.ProtoReflect().Descriptor().FullName(), err, excerpt(json, err))
	}
	return nil
}

var jsonPosition = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// excerpt shows the JSON around the position a decoding error names, since
// that position is in the converted JSON, not in the YAML file.
func excerpt(json []byte, err error) string {
	m := jsonPosition.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	offset := 0
	for l := 1; l < line && offset < len(json); offset++ {
		if json[offset] == '\n' {
			l++
		}
	}
	offset += col - 1
	start, end := max(offset-80, 0), min(offset+40, len(json))
	if start >= end {
		return ""
	}
	return fmt.Sprintf("\n    near: ...%s...", json[start:end])
}

// validateTree runs Envoy's validation rules on m and on every message
// packed in an Any beneath it. A message's own ValidateAll already descends
// into its ordinary sub-messages but stops at an Any (it can only check the
// type URL), so each unpacked Any is validated as a root of its own.
func validateTree(m proto.Message, where string) []error {
	var errs []error
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}
	eachAny(m.ProtoReflect(), where, func(packed *anypb.Any, path string) {
		inner, err := packed.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			return
		}
		errs = append(errs, validateTree(inner, path)...)
	})
	return errs
}

// eachAny calls visit for every Any reachable from msg without crossing
// another Any, with the path of the field that holds it.
func eachAny(msg protoreflect.Message, path string, visit func(*anypb.Any, string)) {
	msg.Range(func(field protoreflect.FieldDescriptor, value protoreflect.Value) bool {
		name := path + "." + string(field.Name())
		child := func(v protoreflect.Value, at string) {
			inner := v.Message()
			if packed, ok := inner.Interface().(*anypb.Any); ok {
				visit(packed, at)
				return
			}
			eachAny(inner, at, visit)
		}
		switch {
		case field.IsMap():
			if field.MapValue().Kind() == protoreflect.MessageKind {
				value.Map().Range(func(key protoreflect.MapKey, v protoreflect.Value) bool {
					child(v, fmt.Sprintf("%s[%v]", name, key.Interface()))
					return true
				})
			}
		case field.IsList():
			if field.Kind() == protoreflect.MessageKind || field.Kind() == protoreflect.GroupKind {
				list := value.List()
				for i := 0; i < list.Len(); i++ {
					child(list.Get(i), fmt.Sprintf("%s[%d]", name, i))
				}
			}
		case field.Kind() == protoreflect.MessageKind || field.Kind() == protoreflect.GroupKind:
			child(value, name)
		}
		return true
	})
}
