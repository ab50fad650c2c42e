package devcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// ErrDataUnusable marks a cluster directory holding data of a previous cluster
// that a restart cannot use (files missing or unreadable). Only a wipe
// ([Options.Wipe]) starts a cluster there.
var ErrDataUnusable = errors.New("the data of the previous cluster cannot be restarted")

// Names of the ports in ports.json and state.json.
const (
	portEtcdClient        = "etcd-client"
	portEtcdPeer          = "etcd-peer"
	portAPIServer         = "kube-apiserver"
	portControllerManager = "kube-controller-manager"
	portScheduler         = "kube-scheduler"
)

var portNames = []string{portEtcdClient, portEtcdPeer, portAPIServer, portControllerManager, portScheduler}

// prepareData readies the directory for a boot and returns the state to boot
// with. When the directory holds the data of a cluster that came up before
// (and wipe is false) it keeps that data — etcd, PKI, kubeconfigs — and its
// ports, or new ports when those are taken or newPorts is set. Otherwise it
// wipes what is there and writes a fresh PKI for new ports.
func (c *Cluster) prepareData(logw io.Writer, wipe, newPorts bool) (*state, error) {
	l := c.Layout
	ports, err := previousData(l)
	switch {
	case wipe && (ports != nil || err != nil):
		fmt.Fprintf(logw, "wiping the data of the previous cluster in %s\n", l.Root)
		ports = nil
	case err != nil:
		return nil, err
	}
	restart := ports != nil
	if !restart {
		if err := resetData(l); err != nil {
			return nil, err
		}
	}
	if !restart || newPorts || !portsFree(ports) {
		if restart {
			fmt.Fprintf(logw, "a port of the cluster in %s is taken; moving it to new ports\n", l.Root)
		}
		if ports, err = freePorts(portNames); err != nil {
			return nil, err
		}
	}
	st := &state{
		APIServer: fmt.Sprintf("https://127.0.0.1:%d", ports[portAPIServer]),
		Ports:     ports,
		PIDs:      map[string]int{},
		Started:   time.Now().UTC(),
	}
	if restart {
		fmt.Fprintf(logw, "restarting local cluster in %s on its data (apiserver %s)\n", l.Root, st.APIServer)
		err = pointKubeconfigs(l, st.APIServer)
	} else {
		fmt.Fprintf(logw, "starting local cluster in %s (apiserver %s)\n", l.Root, st.APIServer)
		err = writePKI(l, st.APIServer)
	}
	if err != nil {
		return nil, err
	}
	c.Restarted = restart
	if c.CAPEM, err = os.ReadFile(l.pki("ca.crt")); err != nil {
		return nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	return st, nil
}

// previousData returns the ports of the cluster that came up on the data in
// l (boot writes its ports file last); nil when none did — whatever else is
// there is left of a start that failed. When a restart cannot use the data,
// the error wraps [ErrDataUnusable] and names what is missing.
func previousData(l Layout) (map[string]int, error) {
	data, err := os.ReadFile(l.PortsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	unusable := func(err error) error { return fmt.Errorf("%w: %w", ErrDataUnusable, err) }
	if err != nil {
		return nil, unusable(err)
	}
	var ports map[string]int
	if err := json.Unmarshal(data, &ports); err != nil {
		return nil, unusable(fmt.Errorf("%s: %w", l.PortsFile(), err))
	}
	for _, name := range portNames {
		if ports[name] <= 0 {
			return nil, unusable(fmt.Errorf("%s names no %s port", l.PortsFile(), name))
		}
	}
	need := []string{l.Kubeconfig(), l.etcdMemberDir()}
	for _, f := range pkiFiles {
		need = append(need, l.pki(f))
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			return nil, unusable(err)
		}
	}
	return ports, nil
}

// resetData removes the data of a previous cluster (etcd, PKI, kubeconfigs,
// pid files) and creates the empty directories of a fresh one.
func resetData(l Layout) error {
	if err := os.RemoveAll(l.StateDir()); err != nil {
		return fmt.Errorf("wiping the cluster data %s: %w", l.StateDir(), err)
	}
	if err := os.Remove(l.Kubeconfig()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wiping the cluster data: %w", err)
	}
	for _, d := range []string{l.StateDir(), l.PKIDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return nil
}

// freePorts reserves a distinct free TCP port on 127.0.0.1 for each name.
func freePorts(names []string) (map[string]int, error) {
	ports := map[string]int{}
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		// Held until all are picked, so that the ports are distinct.
		defer ln.Close()
		ports[name] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// portsFree reports whether every port is free on 127.0.0.1.
func portsFree(ports map[string]int) bool {
	for _, port := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return writeFile(path, data, 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
