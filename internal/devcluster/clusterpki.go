package devcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// pkiFiles are the files writePKI creates in the PKI directory. A restart on
// the data of a previous cluster needs every one of them.
var pkiFiles = []string{
	"ca.crt", "ca.key",
	"apiserver.crt", "apiserver.key",
	"front-proxy-ca.crt", "front-proxy-client.crt", "front-proxy-client.key",
	"kube-controller-manager-serving.crt", "kube-controller-manager-serving.key",
	"kube-scheduler-serving.crt", "kube-scheduler-serving.key",
	"sa.key", "sa.pub",
	"kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig", "kwok.kubeconfig",
}

// writePKI creates the cluster CA, the serving certificates, the front-proxy
// CA, the service-account key and the kubeconfigs (admin and components) for
// the apiserver at server.
func writePKI(l Layout, server string) error {
	ca, err := writeClusterCA(l)
	if err != nil {
		return err
	}
	if err := writeServingCerts(l, ca); err != nil {
		return err
	}
	if err := writeFrontProxyPKI(l); err != nil {
		return err
	}
	if err := writeServiceAccountKey(l); err != nil {
		return err
	}
	return writeKubeconfigs(l, ca, server)
}

// writeClusterCA creates the cluster CA: it signs the serving and client
// certificates, and kube-controller-manager signs CSRs with it.
func writeClusterCA(l Layout) (*CA, error) {
	ca, err := NewCA("meshrev-local-cluster-ca")
	if err != nil {
		return nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := writeFile(l.pki("ca.crt"), ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(l.pki("ca.key"), caKey, 0o600); err != nil {
		return nil, err
	}
	return ca, nil
}

// writeServingCerts issues the serving certificates of kube-apiserver (for
// loopback and the kubernetes Service) and of the controller manager and
// scheduler (for their health endpoints on 127.0.0.1).
func writeServingCerts(l Layout, ca *CA) error {
	apiserver, err := ca.Issue(CertOptions{
		CommonName: "kube-apiserver",
		Server:     true,
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	})
	if err != nil {
		return err
	}
	if err := apiserver.WriteFiles(l.pki("apiserver.crt"), l.pki("apiserver.key")); err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		kp, err := ca.ServingCert("127.0.0.1", "localhost")
		if err != nil {
			return err
		}
		if err := kp.WriteFiles(l.pki(name+"-serving.crt"), l.pki(name+"-serving.key")); err != nil {
			return err
		}
	}
	return nil
}

// writeFrontProxyPKI creates the front-proxy CA and the client certificate the
// apiserver presents to aggregated APIs.
func writeFrontProxyPKI(l Layout) error {
	frontCA, err := NewCA("meshrev-local-front-proxy-ca")
	if err != nil {
		return err
	}
	if err := writeFile(l.pki("front-proxy-ca.crt"), frontCA.CertPEM, 0o644); err != nil {
		return err
	}
	frontClient, err := frontCA.ClientCert("front-proxy-client")
	if err != nil {
		return err
	}
	return frontClient.WriteFiles(l.pki("front-proxy-client.crt"), l.pki("front-proxy-client.key"))
}

// writeServiceAccountKey creates the key pair that signs and verifies
// service-account tokens.
func writeServiceAccountKey(l Layout) error {
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the service-account signing key: %w", err)
	}
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return fmt.Errorf("encoding the service-account key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return fmt.Errorf("encoding the service-account public key: %w", err)
	}
	if err := writeFile(l.pki("sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER}), 0o600); err != nil {
		return err
	}
	return writeFile(l.pki("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}), 0o644)
}

// writeKubeconfigs writes the admin kubeconfig and those of the components,
// each with a client certificate of the cluster CA.
func writeKubeconfigs(l Layout, ca *CA, server string) error {
	for _, u := range kubeconfigUsers(l) {
		kp, err := ca.ClientCert(u.user, u.groups...)
		if err != nil {
			return err
		}
		if err := writeKubeconfig(u.file, server, ca.CertPEM, u.user, kp); err != nil {
			return err
		}
	}
	return nil
}

// kubeconfigUser is a kubeconfig file and the identity of its client certificate.
type kubeconfigUser struct {
	file, user string
	groups     []string
}

func kubeconfigUsers(l Layout) []kubeconfigUser {
	return []kubeconfigUser{
		{l.Kubeconfig(), AdminUser, []string{"system:masters"}},
		{l.pki("kube-controller-manager.kubeconfig"), "system:kube-controller-manager", nil},
		{l.pki("kube-scheduler.kubeconfig"), "system:kube-scheduler", nil},
		{l.pki("kwok.kubeconfig"), "kwok", []string{"system:masters"}},
	}
}

func writeKubeconfig(path, server string, caPEM []byte, user string, kp *KeyPair) error {
	const name = "meshrev-local"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig %s: %w", path, err)
	}
	return writeFile(path, data, 0o600)
}

// pointKubeconfigs points the admin and component kubeconfigs at server,
// for a restart that had to move the apiserver to a new port. A kubeconfig
// already pointing there is left as it is.
func pointKubeconfigs(l Layout, server string) error {
	for _, u := range kubeconfigUsers(l) {
		cfg, err := clientcmd.LoadFromFile(u.file)
		if err != nil {
			return fmt.Errorf("loading %s: %w", u.file, err)
		}
		changed := false
		for _, cl := range cfg.Clusters {
			changed = changed || cl.Server != server
			cl.Server = server
		}
		if !changed {
			continue
		}
		if err := clientcmd.WriteToFile(*cfg, u.file); err != nil {
			return fmt.Errorf("writing %s: %w", u.file, err)
		}
	}
	return nil
}
