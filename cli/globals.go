package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// defaultOwnNamespace is where meshrev's chart installs it.
const defaultOwnNamespace = "meshrev-system"

// globals are the flags every command shares and what they build.
type globals struct {
	streams    IOStreams
	isTerminal func(any) bool
	now        func() time.Time

	// config holds kubectl's standard connection flags (--kubeconfig,
	// --context, --cluster, --user, --as, --as-group, --token, --server,
	// --certificate-authority, --insecure-skip-tls-verify,
	// --request-timeout, ...). It loads the kubeconfig once and keeps it:
	// the REST config and the context's namespace come from the same read.
	config *genericclioptions.ConfigFlags

	output       string
	ownNamespace string

	// restCfg and client are built on first use from the flags.
	restCfg *rest.Config
	client  client.Client
}

// newConfigFlags returns the kubectl connection flags meshrev offers. -n is
// not among them: each verb that takes a namespace defines its own -n with
// its own default (the context's, or all namespaces). --cache-dir (kubectl's
// discovery cache) is left out because meshrev does no discovery.
func newConfigFlags() *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(true)
	f.Namespace = nil
	f.CacheDir = nil
	return f
}

func (g *globals) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	g.config = newConfigFlags()
	g.config.AddFlags(f)
	f.StringVarP(&g.output, "output", "o", outputTable, "output format: table, json or yaml")
	own := defaultOwnNamespace
	if env := os.Getenv("MESHREV_NAMESPACE"); env != "" {
		own = env
	}
	f.StringVar(&g.ownNamespace, "meshrev-namespace", own, "the namespace meshrev is installed in, never injected (default from $MESHREV_NAMESPACE)")
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error { return g.validate() }
}

// validate checks the global flags.
func (g *globals) validate() error {
	if t := g.config.Timeout; t != nil && *t != "" {
		if _, err := clientcmd.ParseTimeout(*t); err != nil {
			return fmt.Errorf("--request-timeout=%s: %w", *t, err)
		}
	}
	switch g.output {
	case outputTable, outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o table, json or yaml", g.output)
}

// colour reports whether to colour the output: stdout is a terminal and
// NO_COLOR (https://no-color.org) is not set.
func (g *globals) colour() bool {
	return os.Getenv("NO_COLOR") == "" && g.isTerminal(g.streams.Out)
}

// restConfig loads the kubeconfig the way kubectl does (--kubeconfig, else
// $KUBECONFIG, else ~/.kube/config) with kubectl's overrides (--context,
// --server, --token, --as, --request-timeout, ...) applied.
func (g *globals) restConfig() (*rest.Config, error) {
	if g.restCfg != nil {
		return g.restCfg, nil
	}
	cfg, err := g.config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (pass --kubeconfig or set KUBECONFIG)", err)
	}
	// Admission warnings (the namespace validator's, the revision router's)
	// are part of the answer: show them on stderr as kubectl does.
	cfg.WarningHandler = rest.NewWarningWriter(g.streams.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	cfg.UserAgent = "meshrev-cli"
	// kubectl's client limits: --wait polls every restarted workload each
	// second, and a large batch would otherwise queue behind client-go's
	// default of 5 requests per second.
	cfg.QPS, cfg.Burst = 50, 300
	g.restCfg = cfg
	return cfg, nil
}

// contextNamespace is the namespace of the kubeconfig context, as kubectl
// uses when -n is not given.
func (g *globals) contextNamespace() (string, error) {
	ns, _, err := g.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("load kubeconfig: %w", err)
	}
	return ns, nil
}

// Client returns the API client built from the global flags.
func (g *globals) Client() (client.Client, error) {
	if g.client != nil {
		return g.client, nil
	}
	cfg, err := g.restConfig()
	if err != nil {
		return nil, err
	}
	s, err := readmodel.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	g.client = c
	return c, nil
}

// getMesh reads the Mesh, saying what to do when there is none.
func getMesh(ctx context.Context, c client.Reader) (*v1alpha1.Mesh, error) {
	var m v1alpha1.Mesh
	if err := c.Get(ctx, types.NamespacedName{Name: v1alpha1.MeshName}, &m); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Mesh %q in the cluster: install meshrev's chart (helm install meshrev charts/meshrev) first", v1alpha1.MeshName)
		}
		return nil, fmt.Errorf("read Mesh %s: %w", v1alpha1.MeshName, err)
	}
	return &m, nil
}

// getMeshOrNil reads the Mesh; no Mesh is not an error here (check-inject
// explains what no Mesh means for a pod).
func getMeshOrNil(ctx context.Context, c client.Reader) (*v1alpha1.Mesh, error) {
	var m v1alpha1.Mesh
	if err := c.Get(ctx, types.NamespacedName{Name: v1alpha1.MeshName}, &m); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read Mesh %s: %w", v1alpha1.MeshName, err)
	}
	return &m, nil
}

// printStructured writes v as indented JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	switch format {
	case outputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case outputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q", format)
}
