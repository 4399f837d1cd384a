package eks

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/botocore"
	"skiff.dev/skiff/internal/clusters"
)

func TestPage(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := Page(names, token, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		token = next
	}
	if !slices.Equal(got, names) {
		t.Fatalf("pages gave %v", got)
	}
	if _, _, err := Page(names, "%%%", 2); err == nil {
		t.Error("bad token accepted")
	}
	if page, next, _ := Page(nil, "", 10); len(page) != 0 || next != "" {
		t.Errorf("empty list: %v %q", page, next)
	}
}

// TestQuotaErrors: quota refusals are botocore's
// ResourceLimitExceededException on the wire: its name in
// x-amzn-ErrorType, its HTTP status (400), its clusterName member (issue
// 15).
func TestQuotaErrors(t *testing.T) {
	data, err := botocore.Model("eks")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Shapes map[string]struct {
			Members map[string]any `json:"members"`
			Error   struct {
				Status int `json:"httpStatusCode"`
			} `json:"error"`
		} `json:"shapes"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	const name = "ResourceLimitExceededException"
	wire, ok := m.Shapes[name]
	if !ok || wire.Error.Status == 0 || wire.Members["clusterName"] == nil || wire.Members["message"] == nil {
		t.Fatalf("botocore's %s: %+v", name, wire)
	}
	role := "arn:aws:iam::000000000000:role/cluster"
	node := "arn:aws:iam::000000000000:role/node"
	tests := []struct {
		name string
		// quotas leave room for one more (nodes: the account's count)
		quotas  func(nodes int) clusters.Quotas
		request string // METHOD PATH BODY, as FuzzEKS's; NAME: a new name
		cluster string // the exception's clusterName ("": the new name)
	}{
		{"clusters per account", func(int) clusters.Quotas { return clusters.Quotas{Clusters: 2} },
			`POST /clusters {"name":"NAME","roleArn":"` + role + `","resourcesVpcConfig":{"subnetIds":["subnet-a","subnet-b"]}}`, ""},
		{"nodes per account", func(n int) clusters.Quotas { return clusters.Quotas{Nodes: n + 1} },
			`POST /clusters/web/node-groups {"nodegroupName":"NAME","nodeRole":"` + node + `","subnets":["subnet-a"],"scalingConfig":{"minSize":1,"maxSize":1,"desiredSize":1}}`, "web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFuzzFixture(t) // cluster web with node group ng0
			web, err := fx.h.Clusters.Get(fx.h.Account(nil), "web")
			if err != nil {
				t.Fatal(err)
			}
			nodes := 0
			for _, ng := range web.Nodegroups {
				nodes += ng.Desired
			}
			fx.h.Clusters.Quotas = tt.quotas(nodes)
			serve := func(name string) *httptest.ResponseRecorder {
				line := strings.ReplaceAll(fx.replace.Replace(tt.request), "NAME", name)
				method, rest, _ := strings.Cut(line, " ")
				path, body, _ := strings.Cut(rest, " ")
				rec := httptest.NewRecorder()
				fx.h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
				return rec
			}
			if rec := serve("one"); rec.Code != http.StatusOK {
				t.Fatalf("the last one the quota allows: %d %s", rec.Code, rec.Body)
			}
			rec := serve("two")
			want := tt.cluster
			if want == "" {
				want = "two"
			}
			var out map[string]string
			json.Unmarshal(rec.Body.Bytes(), &out)
			if rec.Code != wire.Error.Status || rec.Header().Get("x-amzn-ErrorType") != name || out["clusterName"] != want || out["message"] == "" {
				t.Errorf("over the quota: %d %s %v, want %d %s with clusterName %s", rec.Code, rec.Header().Get("x-amzn-ErrorType"), out, wire.Error.Status, name, want)
			}
		})
	}
}
