package eks

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/store"
)

// fuzzDir is where the fuzz target's stores live: tmpfs if the machine has
// one, because every input gets a fresh store (so that a failing input
// reproduces on its own) and bbolt syncs every write.
func fuzzDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "skiff-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// fakeBundles is a catalog of two fake bundles (1.36 and 1.37), made once:
// nothing runs them, the cluster service only reads their versions.
var fakeBundles *bundle.Catalog

func fuzzCatalog(t *testing.T) *bundle.Catalog {
	if fakeBundles != nil {
		return fakeBundles
	}
	root, err := os.MkdirTemp("", "skiff-fuzz-bundles-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root) // Load reads everything it needs
	for _, v := range []string{"v1.36.3", "v1.37.2"} {
		dir := filepath.Join(root, v)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"kubernetesVersion":"`+v+`","etcdVersion":"v3.7.0","binary":"kube"}`), 0o644)
		os.WriteFile(filepath.Join(dir, "kube"), nil, 0o755)
	}
	if fakeBundles, err = bundle.Load(root); err != nil {
		t.Fatal(err)
	}
	return fakeBundles
}

// fuzzFixture is an EKS handler over a fresh store: an account with a
// cluster role, a node role and user bob, the default VPC, and cluster "web"
// with node group "ng0" and add-on kube-proxy, all made ACTIVE by hand (no
// reconciler runs: nothing is started).
type fuzzFixture struct {
	h       *Handler
	st      *store.Store
	replace *strings.Replacer // placeholders of inputs → this fixture's IDs
}

func newFuzzFixture(t *testing.T) *fuzzFixture {
	st, err := store.Open(filepath.Join(fuzzDir(t), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ids := &iam.Service{Store: st}
	acct, _, err := ids.EnsureAccount("fuzz")
	if err != nil {
		t.Fatal(err)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	role, err := ids.CreateRole(acct.ID, "cluster", "", trust, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	nodeRole, err := ids.CreateRole(acct.ID, "node", "", trust, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.CreateUser(acct.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	nets := &network.Service{Store: st, Region: "us-east-1"}
	if _, err := nets.EnsureDefault(acct.ID); err != nil {
		t.Fatal(err)
	}
	subnets, err := nets.Subnets(acct.ID, nil)
	if err != nil || len(subnets) != 3 {
		t.Fatalf("default subnets: %v %v", subnets, err)
	}
	cat := fuzzCatalog(t)
	svc := &clusters.Service{Store: st, Bundles: cat, Network: nets, Addons: catalog.NewCatalog("v1.14.7", cat),
		PrincipalExists: func(p access.Principal) bool { // as skiff serve's
			if p.Kind == "role" {
				_, err := ids.GetRole(p.Account, p.Name)
				return err == nil
			}
			_, err := ids.GetUser(p.Account, p.Name)
			return err == nil
		}}
	h := New(Handler{Clusters: svc, IAM: ids, Region: "us-east-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Account:   func(*http.Request) string { return acct.ID },
		CallerArn: func(*http.Request) string { return "arn:aws:iam::" + acct.ID + ":user/admin" }})
	c, err := svc.Create(clusters.CreateRequest{Account: acct.ID, Name: "web", RoleArn: role.Arn(), CreatorArn: "arn:aws:iam::" + acct.ID + ":user/admin",
		SubnetIDs: []string{subnets[0].ID, subnets[1].ID}})
	if err != nil {
		t.Fatal(err)
	}
	activate := func(c *model.Cluster) error {
		c.Status = model.StatusActive
		for i := range c.Nodegroups {
			c.Nodegroups[i].Status = model.NodegroupActive
		}
		for i := range c.Addons {
			c.Addons[i].Status = model.AddonActive
		}
		return nil
	}
	if _, err := st.UpdateCluster(c.Key(), activate); err != nil {
		t.Fatal(err)
	}
	// An ACTIVE node group and add-on, so that their updates are reachable.
	if _, _, err := svc.CreateNodegroup(acct.ID, "web", clusters.NodegroupRequest{Name: "ng0", NodeRole: nodeRole.Arn(), Subnets: []string{subnets[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAddon(acct.ID, "web", clusters.AddonRequest{Name: catalog.KubeProxy}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateCluster(c.Key(), activate); err != nil {
		t.Fatal(err)
	}
	return &fuzzFixture{h: h, st: st, replace: strings.NewReplacer("000000000000", acct.ID,
		"subnet-a", subnets[0].ID, "subnet-b", subnets[1].ID, "subnet-c", subnets[2].ID)}
}

// snapshot hashes the clusters and the networks: a refused request must not
// change them.
func (f *fuzzFixture) snapshot(t *testing.T) [32]byte {
	h := sha256.New()
	cs, err := f.st.ListClusters()
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(h).Encode(cs)
	err = f.st.NetworkView(func(tx *store.Tx) error {
		return tx.Scan("", func(key string, data []byte) error {
			h.Write([]byte(key + "\x00"))
			h.Write(data)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// FuzzEKS serves a sequence of requests, one a line ("METHOD PATH BODY",
// BODY to the end of the line), to the EKS handler. Properties: no panic;
// no status >= 500; every non-redirect answer is JSON, an error with
// x-amzn-ErrorType; a refused request (4xx) changes no cluster and no
// network.
func FuzzEKS(f *testing.F) {
	role := "arn:aws:iam::000000000000:role/cluster"
	node := "arn:aws:iam::000000000000:role/node"
	user := "arn:aws:iam::000000000000:user/bob"
	for _, seed := range []string{
		"GET /clusters",
		"GET /clusters?maxResults=1&nextToken=d2Vi",
		"GET /clusters/web",
		`POST /clusters {"name":"two","roleArn":"` + role + `","resourcesVpcConfig":{"subnetIds":["subnet-a","subnet-c"]},"tags":{"skiff.dev/apiservers":"3"},"logging":{"clusterLogging":[{"types":["api"],"enabled":true}]}}` +
			"\nGET /clusters/two\nDELETE /clusters/two",
		`POST /clusters {"name":"x","roleArn":"` + role + `","resourcesVpcConfig":{"subnetIds":["subnet-a","subnet-a"]},"version":"1.35"}`,
		`POST /clusters {"name":"x","roleArn":"` + role + `","resourcesVpcConfig":{"subnetIds":["subnet-a","subnet-b"]},"tags":{"skiff.dev/apiservers":"99999999999999999999"}}`,
		`POST /clusters {"name":1e999}`,
		`POST /clusters {"name":"x","resourcesVpcConfig":{"subnetIds":[{"a":[[[[[[]]]]]]}]}}`,
		"POST /clusters {\"name\":\"\xff\xfe\",\"roleArn\":\"" + role + `"`,
		`POST /clusters/web/update-config {"logging":{"clusterLogging":[{"types":["api","audit"],"enabled":true}]}}` + "\nGET /clusters/web/updates",
		`POST /clusters/web/update-config {"resourcesVpcConfig":{"endpointPublicAccess":false,"endpointPrivateAccess":true,"publicAccessCidrs":["10.0.0.0/8"]}}`,
		`POST /clusters/web/updates {"version":"1.37"}`,
		"GET /clusters/web/updates/00000000-0000-0000-0000-000000000000?nodegroupName=x",
		`POST /clusters/web/node-groups {"nodegroupName":"ng","nodeRole":"` + node + `","subnets":["subnet-a"],"scalingConfig":{"minSize":1,"maxSize":2,"desiredSize":1},"labels":{"a":"b"},"taints":[{"key":"k","effect":"NO_SCHEDULE"}]}` +
			"\nGET /clusters/web/node-groups\nGET /clusters/web/node-groups/ng" +
			"\nPOST /clusters/web/node-groups/ng/update-config " + `{"scalingConfig":{"desiredSize":2},"labels":{"removeLabels":["a"]}}` +
			"\nDELETE /clusters/web/node-groups/ng",
		`POST /clusters/web/node-groups {"nodegroupName":"ng","nodeRole":"` + node + `","subnets":["subnet-a"],"scalingConfig":{"minSize":-1,"maxSize":-9223372036854775808}}`,
		`POST /clusters/web/access-entries {"principalArn":"` + user + `","kubernetesGroups":["g"],"type":"STANDARD"}` +
			"\nGET /clusters/web/access-entries\nGET /clusters/web/access-entries/" + strings.ReplaceAll(user, "/", "%2F") +
			"\nPOST /clusters/web/access-entries/" + strings.ReplaceAll(user, "/", "%2F") + "/access-policies " +
			`{"policyArn":"arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy","accessScope":{"type":"namespace","namespaces":["default"]}}` +
			"\nGET /clusters/web/access-entries/" + strings.ReplaceAll(user, "/", "%2F") + "/access-policies" +
			"\nDELETE /clusters/web/access-entries/" + strings.ReplaceAll(user, "/", "%2F") + "/access-policies/arn%3Aaws%3Aeks%3A%3Aaws%3Acluster-access-policy%2FAmazonEKSViewPolicy" +
			"\nDELETE /clusters/web/access-entries/" + strings.ReplaceAll(user, "/", "%2F"),
		`POST /clusters/web/node-groups/ng0/update-config {"scalingConfig":{"minSize":0,"maxSize":3,"desiredSize":3},"taints":{"addOrUpdateTaints":[{"key":"k","value":"v","effect":"NO_EXECUTE"}]}}`,
		`POST /clusters/web/addons/kube-proxy/update {"addonVersion":"v1.37.2-eksbuild.1","configurationValues":"{}","resolveConflicts":"PRESERVE"}` +
			"\nGET /clusters/web/updates?addonName=kube-proxy",
		`POST /clusters/web/access-entries {"principalArn":"` + user + `"}` + "\nPOST /clusters/web/access-entries/" + strings.ReplaceAll(user, "/", "%2F") +
			` {"kubernetesGroups":["a","b"],"username":"u"}`,
		"GET /access-policies?maxResults=100",
		`POST /clusters/web/addons {"addonName":"coredns","configurationValues":"{\"replicaCount\":3}","resolveConflicts":"OVERWRITE"}` +
			"\nGET /clusters/web/addons\nGET /clusters/web/addons/coredns" +
			"\nPOST /clusters/web/addons/coredns/update " + `{"addonVersion":"v1.14.7-eksbuild.1"}` +
			"\nDELETE /clusters/web/addons/coredns?preserve=true",
		"GET /addons/supported-versions?kubernetesVersion=1.37&addonName=kube-proxy",
		"GET /addons/configuration-schemas?addonName=coredns&addonVersion=v1.14.7-eksbuild.1",
		"GET /cluster-versions?clusterType=eks&defaultOnly=true",
		`POST /tags/arn:aws:eks:us-east-1:000000000000:cluster/web {"tags":{"a":"b"}}` +
			"\nGET /tags/arn:aws:eks:us-east-1:000000000000:cluster/web\nDELETE /tags/arn:aws:eks:us-east-1:000000000000:cluster/web?tagKeys=a&tagKeys=b",
		"GET /tags/arn%3Aaws%3Aeks%3Aus-east-1%3A000000000000%3Acluster%2Fweb",
		"DELETE /clusters/web",
		"GET /clusters/%2e%2e/web",
		"PATCH /clusters/web {}",
		"GET /clusters?maxResults=0",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, requests string) {
		fx := newFuzzFixture(t)
		lines := strings.Split(requests, "\n")
		if len(lines) > 20 {
			lines = lines[:20] // state machines, not throughput
		}
		for _, line := range lines {
			line = fx.replace.Replace(line)
			method, rest, _ := strings.Cut(line, " ")
			path, body, _ := strings.Cut(rest, " ")
			req, err := http.NewRequest(method, "http://skiff.test"+path, strings.NewReader(body))
			if err != nil || req.URL.Host != "skiff.test" {
				continue // not a request a client can send
			}
			before := fx.snapshot(t)
			rec := httptest.NewRecorder()
			fx.h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%q: status %d: %s", line, rec.Code, rec.Body)
			}
			if rec.Code >= 300 && rec.Code < 400 {
				continue // the mux redirects unclean paths
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%q: %d with Content-Type %q: %s", line, rec.Code, ct, rec.Body)
			}
			var v map[string]any
			dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
			if err := dec.Decode(&v); err != nil || dec.More() {
				t.Fatalf("%q: %d, not one JSON object: %v\n%s", line, rec.Code, err, rec.Body)
			}
			if rec.Code >= 400 {
				if rec.Header().Get("x-amzn-ErrorType") == "" {
					t.Fatalf("%q: %d without x-amzn-ErrorType: %s", line, rec.Code, rec.Body)
				}
				if fx.snapshot(t) != before {
					t.Fatalf("%q: refused (%d %s) but the store changed", line, rec.Code, rec.Header().Get("x-amzn-ErrorType"))
				}
			}
		}
	})
}
