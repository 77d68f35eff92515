// k8svalidate checks rendered Kubernetes manifests against the Kubernetes API Go types, offline.
//
//	helm template ... | k8svalidate [-require Kind,Kind...] [-]
//	k8svalidate FILE...
//
// Every YAML document is decoded strictly (case-sensitive field names, unknown fields, duplicate
// fields and wrong types are errors) into its typed object from k8s.io/api (or the
// prometheus-operator types for ServiceMonitor). Documents of kinds it does not know fail: a chart
// that grows a new kind must teach the validator about it. On top of the decode, a few semantic
// checks that the API server would make (names, labels, selectors, ports, probe ports, native
// sidecar shape) and cross-document checks (Service and PDB selectors hit the Deployment's pods,
// Service target ports exist, ConfigMap/Secret volumes reference rendered objects or are marked
// optional) are done here, because the API server's own validation is not importable.
//
// Exit 0 when every document is valid, 1 otherwise (every error is printed).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

type doc struct {
	source string // "<stdin>#3" or "file#1"
	kind   string
	name   string
	obj    any
}

type checker struct {
	errs []string
	docs []doc
}

func (c *checker) fail(where, format string, args ...any) {
	c.errs = append(c.errs, where+": "+fmt.Sprintf(format, args...))
}

// newObject returns an empty typed object for apiVersion/kind, or nil when unknown.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	}
	return nil
}

// splitDocuments splits a YAML stream on document separators ("---" lines).
func splitDocuments(data []byte) [][]byte {
	var out [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			out = append(out, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		trimmed := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return out
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func (c *checker) decode(source string, raw []byte) {
	// YAML -> JSON rejects duplicate keys and non-string keys.
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		c.fail(source, "not valid YAML: %v", err)
		return
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		c.fail(source, "no apiVersion/kind: %v", err)
		return
	}
	obj := newObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		c.fail(source, "unknown or unexpected apiVersion/kind %q/%q", tm.APIVersion, tm.Kind)
		return
	}
	strictErrs, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		c.fail(source, "%s: %v", tm.Kind, err)
		return
	}
	for _, e := range strictErrs {
		c.fail(source, "%s: %v", tm.Kind, e)
	}
	meta := objectMeta(obj)
	where := fmt.Sprintf("%s (%s %s)", source, tm.Kind, meta.Name)
	for _, e := range apivalidation.ValidateObjectMeta(meta, false, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata")) {
		c.fail(where, "%v", e)
	}
	c.docs = append(c.docs, doc{source: where, kind: tm.Kind, name: meta.Name, obj: obj})
}

func objectMeta(obj any) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.ObjectMeta
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.Service:
		return &o.ObjectMeta
	case *corev1.Secret:
		return &o.ObjectMeta
	case *corev1.ServiceAccount:
		return &o.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return &o.ObjectMeta
	case *monitoringv1.ServiceMonitor:
		return &o.ObjectMeta
	}
	panic("unreachable")
}

func (c *checker) selector(where string, sel *metav1.LabelSelector) labels.Selector {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		c.fail(where, "empty selector")
		return nil
	}
	for _, e := range metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, field.NewPath("selector")) {
		c.fail(where, "%v", e)
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.fail(where, "selector: %v", err)
		return nil
	}
	return s
}

func (c *checker) container(where string, ct *corev1.Container, names map[string]bool) {
	w := where + " container " + ct.Name
	for _, m := range validation.IsDNS1123Label(ct.Name) {
		c.fail(w, "name: %s", m)
	}
	if names[ct.Name] {
		c.fail(w, "duplicate container name")
	}
	names[ct.Name] = true
	if strings.TrimSpace(ct.Image) == "" {
		c.fail(w, "image is empty")
	}
	portNames := map[string]bool{}
	portNumbers := map[int32]bool{}
	for _, p := range ct.Ports {
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			c.fail(w, "containerPort %d out of range", p.ContainerPort)
		}
		if p.Name != "" {
			for _, m := range validation.IsValidPortName(p.Name) {
				c.fail(w, "port name %q: %s", p.Name, m)
			}
			if portNames[p.Name] {
				c.fail(w, "duplicate port name %q", p.Name)
			}
			portNames[p.Name] = true
		}
		portNumbers[p.ContainerPort] = true
	}
	for _, e := range ct.Env {
		if e.Value != "" && e.ValueFrom != nil {
			c.fail(w, "env %s has both value and valueFrom", e.Name)
		}
		if len(validation.IsEnvVarName(e.Name)) > 0 {
			c.fail(w, "env name %q invalid", e.Name)
		}
	}
	probe := func(kind string, p *corev1.Probe) {
		if p == nil {
			return
		}
		n := 0
		if p.HTTPGet != nil {
			n++
			c.probePort(w+" "+kind, p.HTTPGet.Port, portNames)
			if !strings.HasPrefix(p.HTTPGet.Path, "/") {
				c.fail(w, "%s path %q must start with /", kind, p.HTTPGet.Path)
			}
		}
		if p.TCPSocket != nil {
			n++
			c.probePort(w+" "+kind, p.TCPSocket.Port, portNames)
		}
		if p.Exec != nil {
			n++
		}
		if p.GRPC != nil {
			n++
		}
		if n != 1 {
			c.fail(w, "%s must have exactly one handler, has %d", kind, n)
		}
		if p.PeriodSeconds < 0 || p.TimeoutSeconds < 0 || p.FailureThreshold < 0 || p.InitialDelaySeconds < 0 {
			c.fail(w, "%s has a negative timing", kind)
		}
	}
	probe("livenessProbe", ct.LivenessProbe)
	probe("readinessProbe", ct.ReadinessProbe)
	probe("startupProbe", ct.StartupProbe)
}

func (c *checker) probePort(where string, port intstr.IntOrString, names map[string]bool) {
	if port.Type == intstr.String {
		if !names[port.StrVal] {
			c.fail(where, "port %q is not a named port of the container", port.StrVal)
		}
	} else if port.IntVal < 1 || port.IntVal > 65535 {
		c.fail(where, "port %d out of range", port.IntVal)
	}
}

func (c *checker) deployment(d *doc, dep *appsv1.Deployment) {
	sel := c.selector(d.source, dep.Spec.Selector)
	tpl := &dep.Spec.Template
	for _, e := range metav1validation.ValidateLabels(tpl.Labels, field.NewPath("spec.template.metadata.labels")) {
		c.fail(d.source, "%v", e)
	}
	if sel != nil && !sel.Matches(labels.Set(tpl.Labels)) {
		c.fail(d.source, "selector %s does not match the pod template labels %v", sel, tpl.Labels)
	}
	spec := &tpl.Spec
	if len(spec.Containers) == 0 {
		c.fail(d.source, "no containers")
	}
	names := map[string]bool{}
	for i := range spec.InitContainers {
		ic := &spec.InitContainers[i]
		c.container(d.source+" initContainer", ic, names)
		if ic.RestartPolicy != nil && *ic.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			c.fail(d.source, "initContainer %s: restartPolicy may only be Always", ic.Name)
		}
		if (ic.RestartPolicy == nil || *ic.RestartPolicy != corev1.ContainerRestartPolicyAlways) &&
			(ic.LivenessProbe != nil || ic.ReadinessProbe != nil || ic.StartupProbe != nil) {
			c.fail(d.source, "initContainer %s: probes are only allowed on native sidecars (restartPolicy: Always)", ic.Name)
		}
	}
	for i := range spec.Containers {
		c.container(d.source, &spec.Containers[i], names)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		for _, m := range validation.IsDNS1123Label(v.Name) {
			c.fail(d.source, "volume %q: %s", v.Name, m)
		}
		if volumes[v.Name] {
			c.fail(d.source, "duplicate volume %q", v.Name)
		}
		volumes[v.Name] = true
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, ct := range all {
		for _, m := range ct.VolumeMounts {
			if !volumes[m.Name] {
				c.fail(d.source, "container %s mounts unknown volume %q", ct.Name, m.Name)
			}
			if !strings.HasPrefix(m.MountPath, "/") {
				c.fail(d.source, "container %s mountPath %q not absolute", ct.Name, m.MountPath)
			}
		}
	}
	if spec.TerminationGracePeriodSeconds != nil && *spec.TerminationGracePeriodSeconds < 0 {
		c.fail(d.source, "negative terminationGracePeriodSeconds")
	}
}

func (c *checker) podsOf() []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range c.docs {
		if dep, ok := d.obj.(*appsv1.Deployment); ok {
			out = append(out, dep)
		}
	}
	return out
}

func (c *checker) crossChecks() {
	deps := c.podsOf()
	byKind := map[string]map[string]bool{}
	for _, d := range c.docs {
		if byKind[d.kind] == nil {
			byKind[d.kind] = map[string]bool{}
		}
		byKind[d.kind][d.name] = true
	}
	for i := range c.docs {
		d := &c.docs[i]
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			c.deployment(d, o)
			for _, v := range o.Spec.Template.Spec.Volumes {
				if v.ConfigMap != nil && !byKind["ConfigMap"][v.ConfigMap.Name] && (v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional) {
					c.fail(d.source, "volume %s references ConfigMap %q that is not rendered", v.Name, v.ConfigMap.Name)
				}
			}
		case *corev1.Service:
			if len(o.Spec.Ports) == 0 {
				c.fail(d.source, "no ports")
			}
			if len(o.Spec.Selector) == 0 {
				c.fail(d.source, "empty selector")
				continue
			}
			sel := labels.SelectorFromSet(o.Spec.Selector)
			matched := false
			for _, dep := range deps {
				if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
					continue
				}
				matched = true
				for _, p := range o.Spec.Ports {
					if p.TargetPort.Type == intstr.String && !podHasPort(&dep.Spec.Template.Spec, p.TargetPort.StrVal) {
						c.fail(d.source, "targetPort %q is not a named port in Deployment %s", p.TargetPort.StrVal, dep.Name)
					}
				}
			}
			if len(deps) > 0 && !matched {
				c.fail(d.source, "selector %v matches no rendered Deployment", o.Spec.Selector)
			}
		case *policyv1.PodDisruptionBudget:
			sel := c.selector(d.source, o.Spec.Selector)
			if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
				c.fail(d.source, "exactly one of minAvailable and maxUnavailable must be set")
			}
			if sel != nil && len(deps) > 0 {
				matched := false
				for _, dep := range deps {
					matched = matched || sel.Matches(labels.Set(dep.Spec.Template.Labels))
				}
				if !matched {
					c.fail(d.source, "selector %s matches no rendered Deployment", sel)
				}
			}
		case *corev1.ConfigMap:
			for k := range o.Data {
				for _, m := range validation.IsConfigMapKey(k) {
					c.fail(d.source, "data key %q: %s", k, m)
				}
			}
		case *monitoringv1.ServiceMonitor:
			c.selector(d.source, &o.Spec.Selector)
			if len(o.Spec.Endpoints) == 0 {
				c.fail(d.source, "no endpoints")
			}
			for _, e := range o.Spec.Endpoints {
				if e.Port == "" && e.TargetPort == nil {
					c.fail(d.source, "endpoint has neither port nor targetPort")
				}
			}
		}
	}
}

func podHasPort(spec *corev1.PodSpec, name string) bool {
	for _, ct := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, p := range ct.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func main() {
	require := flag.String("require", "", "comma-separated kinds that must each appear at least once")
	extract := flag.String("extract", "", "write the data key KEY of every ConfigMap to DIR/<configmap>.yaml, as KEY:DIR")
	flag.Parse()
	c := &checker{}
	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	for _, in := range inputs {
		var data []byte
		var err error
		name := in
		if in == "-" {
			name = "<stdin>"
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(in)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for i, raw := range splitDocuments(data) {
			c.decode(fmt.Sprintf("%s#%d", name, i+1), raw)
		}
	}
	if len(c.docs) == 0 && len(c.errs) == 0 {
		c.errs = append(c.errs, "no documents")
	}
	c.crossChecks()
	if *require != "" {
		seen := map[string]bool{}
		for _, d := range c.docs {
			seen[d.kind] = true
		}
		for _, k := range strings.Split(*require, ",") {
			if k = strings.TrimSpace(k); k != "" && !seen[k] {
				c.errs = append(c.errs, "required kind "+k+" was not rendered")
			}
		}
	}
	if *extract != "" {
		key, dir, ok := strings.Cut(*extract, ":")
		if !ok {
			c.errs = append(c.errs, "-extract wants KEY:DIR")
		}
		n := 0
		for _, d := range c.docs {
			cm, isCM := d.obj.(*corev1.ConfigMap)
			if !ok || !isCM {
				continue
			}
			text, has := cm.Data[key]
			if !has {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, cm.Name+".yaml"), []byte(text), 0o644); err != nil {
				c.errs = append(c.errs, err.Error())
			}
			n++
		}
		if ok && n == 0 {
			c.errs = append(c.errs, "no ConfigMap has the data key "+key)
		}
	}
	counts := map[string]int{}
	for _, d := range c.docs {
		counts[d.kind]++
	}
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	if len(c.errs) > 0 {
		for _, e := range c.errs {
			fmt.Fprintln(os.Stderr, "k8svalidate: "+e)
		}
		fmt.Fprintf(os.Stderr, "k8svalidate: %d error(s) in %d document(s) [%s]\n", len(c.errs), len(c.docs), strings.Join(kinds, " "))
		os.Exit(1)
	}
	fmt.Printf("k8svalidate: %d document(s) valid [%s]\n", len(c.docs), strings.Join(kinds, " "))
}
