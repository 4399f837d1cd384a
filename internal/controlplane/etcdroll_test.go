package controlplane

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseBusy(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       busy
		err        bool
	}{
		{"empty", "", busy{}, false},
		{"etcd's metrics", `# HELP etcd_server_proposals_pending The current number of pending proposals to commit.
# TYPE etcd_server_proposals_pending gauge
etcd_server_proposals_pending 2
etcd_server_proposals_committed_total 1234
grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 100
grpc_server_started_total{grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 50
grpc_server_started_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 7
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 99
grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1
grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 48
grpc_server_handled_total{grpc_code="OK",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 3
`, busy{proposals: 2, started: 150, handled: 148}, false},
		{"exponent and timestamp", "grpc_server_started_total{grpc_type=\"unary\"} 1.5e+06 1700000000\n", busy{started: 1.5e6}, false},
		{"bad value", "etcd_server_proposals_pending x\n", busy{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBusy(bufio.NewScanner(strings.NewReader(tc.text)))
			if (err != nil) != tc.err || (!tc.err && got != tc.want) {
				t.Errorf("got %+v, %v; want %+v (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
}
