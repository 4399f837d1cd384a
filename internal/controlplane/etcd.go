package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/util/cert"

	"skiff.dev/skiff/internal/model"
)

// etcdClient connects to the members other than skip (-1 for none) with
// skiff's own etcd client certificate.
func (l Layout) etcdClient(c *model.Cluster, skip int) (*clientv3.Client, error) {
	pair, err := tls.LoadX509KeyPair(l.pki("etcd/skiff-client.crt"), l.pki("etcd/skiff-client.key"))
	if err != nil {
		return nil, err
	}
	pool, err := cert.NewPool(l.pki("etcd/ca.crt"))
	if err != nil {
		return nil, err
	}
	var endpoints []string
	for i, ep := range l.EtcdEndpoints(c) {
		if i != skip {
			endpoints = append(endpoints, ep)
		}
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool},
		Logger:      zap.NewNop(),
	})
}

// ensureEtcdMember makes member i of a bootstrapped cluster ready to start.
// A member with data restarts in place. A member whose data is gone must
// not rejoin under its old identity: it is removed from the cluster and a
// fresh member of the next generation is added (runtime reconfiguration),
// one member at a time, so quorum holds throughout. Every step is
// idempotent: skiff may crash between any two and repeat them.
// It returns the cluster as stored afterwards.
func (w *worker) ensureEtcdMember(ctx context.Context, c *model.Cluster, i int) (*model.Cluster, error) {
	l := w.layout(c)
	if !c.Etcd.Bootstrapped {
		return c, nil
	}
	if has, err := l.Place.HasData(l.EtcdVolume(l.etcdMemberName(c, i))); err != nil || has {
		return c, err
	}
	cli, err := l.etcdClient(c, i)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	peer := l.etcdPeerURL(i)
	var old *memberInfo
	for _, m := range list.Members {
		if slices.Contains(m.PeerURLs, peer) {
			old = &memberInfo{id: m.ID, name: m.Name}
		}
	}
	zoneKey := "etcd-" + c.Zones[i]
	gen := c.Etcd.Generations[zoneKey]
	// A started member (it has a name) lost its data: next generation.
	// No member at all with generation 0: it was removed behind our back.
	if (old != nil && old.name != "") || (old == nil && gen == 0) {
		c, err = w.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
			if c.Etcd.Generations == nil {
				c.Etcd.Generations = map[string]int{}
			}
			c.Etcd.Generations[zoneKey] = gen + 1
			return nil
		})
		if err != nil {
			return nil, err
		}
		w.event(c, zoneKey, model.EventDetected, fmt.Sprintf("etcd member %s has no data; replacing it with %s", etcdName(c.Zones[i], gen), l.etcdMemberName(c, i)))
	}
	if old != nil && old.name != "" {
		if _, err := cli.MemberRemove(ctx, old.id); err != nil && !errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("remove etcd member %s: %w", old.name, err)
		}
		old = nil
	}
	if old == nil {
		if _, err := cli.MemberAdd(ctx, []string{peer}); err != nil {
			return nil, fmt.Errorf("add etcd member %s: %w", l.etcdMemberName(c, i), err)
		}
	}
	// Data dirs of earlier generations are of no use any more.
	for g := 0; g < c.Etcd.Generations[zoneKey]; g++ {
		if err := l.Place.RemoveVolume(l.EtcdVolume(etcdName(c.Zones[i], g))); err != nil {
			return nil, err
		}
	}
	return c, nil
}

type memberInfo struct {
	id   uint64
	name string
}
