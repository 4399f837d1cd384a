package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"skiff.dev/skiff/internal/endpoint"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/status"
)

// Replacing etcd members without a failed request (issue 17;
// docs/etcd-roll-research.md). While raft moves the leadership, the
// leader drops every proposal: a write made on it fails ("raft proposal
// dropped"), and one a follower forwarded to it is lost without a word,
// so its client waits for etcd's request timeout (7 s) and fails. The
// apiserver retries neither. So a roll moves the leadership exactly once
// (followers are replaced first, the leader last, and it hands over to a
// member already on the new spec), and around that one move no client
// write is on its way: the endpoint holds what clients send, etcd is
// let run dry, the leadership moves, every member sees the new leader,
// and the endpoint lets go.

// Bounds of the quiet moment around a leadership move.
const (
	// quietFloor covers requests already inside an apiserver (admission,
	// encoding) when the hold begins: they reach etcd within it.
	quietFloor = 200 * time.Millisecond
	// quietMost is the longest wait for etcd to run dry; the move goes on
	// after it (the hold ends by itself at lb.MaxHold anyway).
	quietMost = 1200 * time.Millisecond
	// holdFor is what the endpoint is asked to hold at most.
	holdFor = 2 * time.Second
)

// etcdLeader returns the index of c's member that leads (-1: none known).
func (w *worker) etcdLeader(ctx context.Context, c *model.Cluster) (int, error) {
	l := w.layout(c)
	cli, err := l.etcdClient(c, -1)
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for i, ep := range l.EtcdEndpoints(c) {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return -1, errors.New("no member says it leads")
}

// holdEndpoint asks c's endpoint replicas to hold what clients send (for
// holdFor at most) and returns what lets go. A replica that does not
// answer is skipped: its clients only lose the protection.
func (w *worker) holdEndpoint(ctx context.Context, l Layout) func() {
	var held []string
	for i := range EndpointReplicas {
		addr := l.EndpointStatusAddr(i)
		hctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := status.Post(hctx, addr, endpoint.HoldPath, url.Values{"for": {holdFor.String()}})
		cancel()
		if err != nil {
			w.cfg.Log.Warn("endpoint replica not held for the etcd leadership move", "replica", addr, "err", err)
			continue
		}
		held = append(held, addr)
	}
	return func() {
		for _, addr := range held {
			rctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			if err := status.Post(rctx, addr, endpoint.ReleasePath, nil); err != nil {
				w.cfg.Log.Warn("endpoint replica not released (its hold ends by itself)", "replica", addr, "err", err)
			}
			cancel()
		}
	}
}

// etcdBusy reads what member i has in flight from its metrics: proposals
// of its clients not yet applied (including those forwarded to the
// leader), and unary RPCs started and not yet handled.
func etcdBusy(ctx context.Context, hc *http.Client, l Layout, i int) (proposals, unary float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hostPort(l.EtcdIP(i), EtcdMetricsPort)+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("etcd metrics: %s", resp.Status)
	}
	m, err := parseBusy(bufio.NewScanner(resp.Body))
	return m.proposals, m.started - m.handled, err
}

type busy struct{ proposals, started, handled float64 }

// parseBusy sums the metrics etcdBusy needs from Prometheus' text format.
func parseBusy(sc *bufio.Scanner) (busy, error) {
	var b busy
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		labels := ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			labels = line[i:strings.LastIndexByte(line, '}')]
			name = name[:i]
			_, rest, _ = strings.Cut(line[strings.LastIndexByte(line, '}'):], " ")
		}
		var dst *float64
		switch {
		case name == "etcd_server_proposals_pending":
			dst = &b.proposals
		case name == "grpc_server_started_total" && strings.Contains(labels, `grpc_type="unary"`):
			dst = &b.started
		case name == "grpc_server_handled_total" && strings.Contains(labels, `grpc_type="unary"`):
			dst = &b.handled
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			return b, fmt.Errorf("metric %s: %w", name, err)
		}
		*dst += v
	}
	return b, sc.Err()
}

// waitQuiet waits (quietFloor at least, quietMost at most) until no member
// of c's etcd has a proposal or a unary RPC in flight, and says whether
// it got there.
func (w *worker) waitQuiet(ctx context.Context, l Layout, n int) bool {
	start := time.Now()
	time.Sleep(quietFloor)
	for {
		quiet := true
		for i := range n {
			mctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			p, u, err := etcdBusy(mctx, w.prober.etcd, l, i)
			cancel()
			if err == nil && (p > 0 || u > 0) {
				quiet = false
				break
			}
		}
		if quiet {
			return true
		}
		if time.Since(start) > quietMost || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// confirmLeader waits until every member of eps that answers names leader
// as the leader.
func confirmLeader(ctx context.Context, cli *clientv3.Client, eps []string, leader uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		agreed := true
		for _, ep := range eps {
			st, err := cli.Status(ctx, ep)
			if err == nil && st.Leader != leader {
				agreed = false
			}
		}
		if agreed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the members do not all see the new leader %x yet", leader)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
