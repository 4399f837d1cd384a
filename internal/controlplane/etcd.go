package controlplane

import (
	"context"
	"crypto/rand"
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
	var endpoints []string
	for i, ep := range l.EtcdEndpoints(c) {
		if i != skip {
			endpoints = append(endpoints, ep)
		}
	}
	return l.etcdClientOf(endpoints)
}

// etcdClientOf connects to endpoints with skiff's own etcd client
// certificate.
func (l Layout) etcdClientOf(endpoints []string) (*clientv3.Client, error) {
	pair, err := tls.LoadX509KeyPair(l.pki("etcd/skiff-client.crt"), l.pki("etcd/skiff-client.key"))
	if err != nil {
		return nil, err
	}
	pool, err := cert.NewPool(l.pki("etcd/ca.crt"))
	if err != nil {
		return nil, err
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

// handOffLeadership moves the leadership of c's etcd away from member i
// before it is stopped for a replacement: a leader that just stops leaves
// the requests forwarded to it waiting for etcd's request timeout (7 s)
// while the others elect a new one; a handed-off one is a follower and
// its clients move on at its graceful stop. The new leader is one of
// prefer if one is healthy (members already on the new spec: the roll
// then moves the leadership once), and the move happens in a quiet
// moment (etcdroll.go). Best effort: an error only costs that wait.
func (w *worker) handOffLeadership(ctx context.Context, c *model.Cluster, i int, prefer []int) error {
	l := w.layout(c)
	cli, err := l.etcdClient(c, -1)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	eps := l.EtcdEndpoints(c)
	st, err := cli.Status(ctx, eps[i])
	if err != nil {
		return fmt.Errorf("status of %s: %w", eps[i], err)
	}
	if st.Leader != st.Header.MemberId {
		return nil
	}
	order := slices.Clone(prefer)
	for j := range eps {
		if !slices.Contains(order, j) {
			order = append(order, j)
		}
	}
	var target uint64
	for _, j := range order {
		if j == i {
			continue
		}
		other, err := cli.Status(ctx, eps[j])
		if err == nil && len(other.Errors) == 0 {
			target = other.Header.MemberId
			break
		}
	}
	if target == 0 {
		return errors.New("no other healthy member to take the leadership")
	}
	// MoveLeader is served by the leader: ask member i itself.
	one, err := l.etcdClientOf([]string{eps[i]})
	if err != nil {
		return err
	}
	defer one.Close()
	release := w.holdEndpoint(ctx, l)
	defer release()
	if !w.waitQuiet(ctx, l, len(eps)) {
		w.cfg.Log.Warn("etcd did not run dry before its leadership moved", "cluster", c.Name)
	}
	start := time.Now()
	if _, err := one.MoveLeader(ctx, target); err != nil {
		return fmt.Errorf("move the leadership to %x: %w", target, err)
	}
	if err := confirmLeader(ctx, cli, eps, target); err != nil {
		return err
	}
	w.cfg.Log.Info("etcd leadership moved", "cluster", c.Name, "from", eps[i], "to", fmt.Sprintf("%x", target),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// etcdSettled says whether every member of c's etcd answers, knows the
// same leader and has applied what the others have (within a few
// entries): only then may the next member stop for a replacement. A
// member that just restarted passes its health probe before it has caught
// up; stopping another then leaves the cluster without a working quorum
// for seconds.
func (w *worker) etcdSettled(ctx context.Context, c *model.Cluster) error {
	l := w.layout(c)
	cli, err := l.etcdClient(c, -1)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var leader uint64
	var lowest, highest uint64
	for i, ep := range l.EtcdEndpoints(c) {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			return fmt.Errorf("member %s: %w", ep, err)
		}
		if st.Leader == 0 || i > 0 && st.Leader != leader {
			return fmt.Errorf("member %s knows leader %x, others %x", ep, st.Leader, leader)
		}
		leader = st.Leader
		if i == 0 || st.RaftAppliedIndex < lowest {
			lowest = st.RaftAppliedIndex
		}
		highest = max(highest, st.RaftAppliedIndex)
	}
	if highest-lowest > settledLag {
		return fmt.Errorf("a member is %d entries behind", highest-lowest)
	}
	return nil
}

// settledLag is how far behind the others a member may be and count as
// caught up (the writes of a busy moment).
const settledLag = 1000

// Sealer seals skiff's own secrets in the store (kms.RootKey).
type Sealer interface {
	Seal(purpose string, data []byte) []byte
	Unseal(purpose string, sealed []byte) ([]byte, error)
}

// openEtcdVolume opens the volume of c's current member i (nothing for a
// cluster whose members use plain directories). The volume key is one per
// cluster, made on first use and kept in the store sealed by skiff's root
// key, as EKS' volume keys are data keys of a master key. It returns the
// cluster as stored afterwards.
func (w *worker) openEtcdVolume(ctx context.Context, c *model.Cluster, i int) (*model.Cluster, error) {
	if !c.Etcd.EncryptedVolumes {
		return c, nil
	}
	if w.cfg.Sealer == nil {
		return c, errors.New("this skiff has no KMS root key to seal volume keys")
	}
	purpose := "etcd volume key of cluster " + c.ID
	if c.Etcd.VolumeKey == nil {
		key := make([]byte, 64)
		if _, err := rand.Read(key); err != nil {
			return c, err
		}
		sealed := w.cfg.Sealer.Seal(purpose, key)
		clear(key)
		nc, err := w.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
			if c.Etcd.VolumeKey == nil { // made once: never replace a key in use
				c.Etcd.VolumeKey = sealed
			}
			return nil
		})
		if err != nil {
			return c, err
		}
		c = nc
	}
	key, err := w.cfg.Sealer.Unseal(purpose, c.Etcd.VolumeKey)
	if err != nil {
		return c, err
	}
	defer clear(key)
	l := w.layout(c)
	return c, l.Place.OpenVolume(ctx, l.EtcdVolume(l.etcdMemberName(c, i)), key)
}
