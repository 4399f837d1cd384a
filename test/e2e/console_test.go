package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserFor starts Debian's Chromium headless, trusting skiff's API
// certificate (by its public key) and nothing else untrusted. It returns
// a context for chromedp actions in one tab.
func browserFor(t *testing.T, s *server) (context.Context, func() context.Context) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is missing (make deps installs it): %v", err)
	}
	// Only to read the public key of the certificate skiff serves on this
	// test's own loopback port: Chromium then trusts that key and no other.
	conn, err := tls.Dial("tcp", s.host(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	conn.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.WindowSize(1280, 800),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Another tab with its own cookies (an incognito-like context).
	fresh := func() context.Context {
		c, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		// The first run opens the tab for the context's whole life: no
		// timeout on it.
		if err := chromedp.Do(c); err != nil {
			t.Fatalf("open a tab: %v", err)
		}
		return c
	}
	return bctx, fresh
}

type step = chromedp.Action[chromedp.Void]

// run runs chromedp actions with a timeout, failing the test with what
// the page said if they fail.
func run(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...step) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		pc, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		page, _ := chromedp.Run(pc, chromedp.Evaluate[string](`location.href + "\n" + (document.body ? document.body.innerText : "")`))
		t.Fatalf("%s: %v\npage: %s", what, err, tail(page, 1500))
	}
}

// value runs one chromedp action that reads something.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitJS polls a JavaScript expression until it is true, across page
// loads (a form's submission navigates while it polls).
func waitJS(expr string) step {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		var last error
		for {
			ok, err := chromedp.Evaluate[bool]("!!("+expr+")")(ctx, t)
			if err == nil && ok {
				return chromedp.Void{}, nil
			}
			if err != nil {
				last = err
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s: never true (last error: %v): %w", expr, last, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// js evaluates JavaScript for its effect.
func js(expr string) step {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return chromedp.Void{}, err
	}
}

// shot saves a screenshot of the page as NAME.png in
// $SKIFF_E2E_SCREENSHOTS, if set (to look at the pages).
func shot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("SKIFF_E2E_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Error(err)
	}
}

func evalInt(t *testing.T, ctx context.Context, expr string) int {
	t.Helper()
	return value(t, ctx, "evaluate "+expr, chromedp.Evaluate[int](expr))
}

// TestConsole drives the web console in a real Chromium: sign in with a
// key pair, create a cluster with a 2-node group through the form, watch
// it become ACTIVE and its topology fill in without a reload, see a killed
// apiserver go unhealthy and be replaced, sign in by a one-time link, and
// delete through the forms.
func TestConsole(t *testing.T) {
	s, _ := serveTest(t)
	ctx, fresh := browserFor(t, s)
	base := s.endpoint + "/console/"

	// Sign in with a key pair (the root user skiff env prints), with the
	// keyboard only: Tab to the field, type, Tab, type, Enter.
	run(t, ctx, 30*time.Second, "open the sign-in page",
		chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#akid")))
	for i := 0; evalInt(t, ctx, `document.activeElement && document.activeElement.id === "akid" ? 1 : 0`) == 0; i++ {
		if i == 10 {
			t.Fatal("ten presses of Tab never reached the access key field")
		}
		run(t, ctx, 5*time.Second, "press Tab", chromedp.KeyEvent("\t"))
	}
	run(t, ctx, 30*time.Second, "sign in with the keyboard",
		chromedp.KeyEvent(envValue(s.env, "AWS_ACCESS_KEY_ID")+"\t"+envValue(s.env, "AWS_SECRET_ACCESS_KEY")+"\r"),
		waitJS(`document.querySelector("h1") && document.querySelector("h1").textContent === "Clusters"`))

	// The create form: every control has a label.
	run(t, ctx, 30*time.Second, "open the create form",
		chromedp.Navigate(base+"clusters/new"), chromedp.WaitVisible(chromedp.CSS("#name")))
	shot(t, ctx, "create")
	if n := evalInt(t, ctx, `[...document.querySelectorAll("input:not([type=hidden]), select")].filter(e => !e.labels || e.labels.length === 0).length`); n != 0 {
		t.Fatalf("%d form controls have no label", n)
	}
	// A bad name comes back in the API's words, with the values kept.
	run(t, ctx, 30*time.Second, "submit a bad name",
		chromedp.SendKeys(chromedp.CSS("#name"), "bad name!"),
		chromedp.Submit(chromedp.CSS("#name")),
		waitJS(`document.querySelector(".error") !== null`))
	msg := value(t, ctx, "read the error", chromedp.Evaluate[string](`document.querySelector(".error").textContent`))
	kept := value(t, ctx, "read the name", chromedp.Evaluate[string](`document.querySelector("#name").value`))
	if !strings.Contains(msg, "InvalidParameterException") || kept != "bad name!" {
		t.Fatalf("bad name: error %q, name kept %q", msg, kept)
	}
	start := time.Now()
	run(t, ctx, 60*time.Second, "create a cluster with a 2-node group",
		chromedp.SetValue(chromedp.CSS("#name"), "web"),
		chromedp.SetValue(chromedp.CSS("#version"), "1.36"), // upgraded from the Updates tab below
		chromedp.SetValue(chromedp.CSS("#nodegroup"), "ng1"),
		chromedp.SetValue(chromedp.CSS("#size"), "2"),
		chromedp.Submit(chromedp.CSS("#name")),
		chromedp.WaitVisible(chromedp.CSS("#cluster-status")),
		// A mark that a reload would wipe.
		js(`window.skiffMark = 1; window.skiffSeen = {}`))
	run(t, ctx, 90*time.Second, "wait for ACTIVE on the page",
		waitJS(`document.querySelector("#cluster-status").dataset.status === "ACTIVE"`))
	t.Logf("ACTIVE on the page %.1fs after submit", time.Since(start).Seconds())
	run(t, ctx, 30*time.Second, "three etcd members in three zones",
		waitJS(`[...document.querySelectorAll(".zone")].filter(z => z.querySelectorAll("li[data-kind=etcd][data-state=healthy]").length === 1).length === 3`))
	run(t, ctx, 3*time.Minute, "two Ready nodes in the topology",
		waitJS(`document.querySelectorAll("li[data-kind=node][data-state=healthy]").length === 2`))
	t.Logf("2 nodes Ready on the page %.1fs after submit", time.Since(start).Seconds())
	shot(t, ctx, "topology")

	// Kill an apiserver: the page shows it unhealthy, then healthy again.
	var victim string
	var pid int
	for id, p := range instancePIDs(s.dataDir) {
		if _, name, _ := strings.Cut(id, "/"); strings.HasPrefix(name, "apiserver") {
			victim, pid = name, p
			break
		}
	}
	if victim == "" {
		t.Fatal("no apiserver instance found")
	}
	sel := fmt.Sprintf(`document.querySelector("li[data-kind=apiserver][data-name='%s']")`, victim)
	run(t, ctx, 10*time.Second, "watch the apiserver's state",
		waitJS(sel+` !== null && `+sel+`.dataset.state === "healthy"`),
		// Record every state the page shows, however briefly.
		js(`new MutationObserver(() => { const e = `+sel+`; if (e) window.skiffSeen[e.dataset.state] = Date.now(); })
			.observe(document.querySelector("#live"), {childList: true, subtree: true})`))
	killed := time.Now()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, 20*time.Second, "the apiserver shown not healthy",
		waitJS(`Object.keys(window.skiffSeen).some(k => k !== "healthy")`))
	shown := time.Since(killed)
	run(t, ctx, 90*time.Second, "the apiserver shown healthy again",
		waitJS(`(window.skiffSeen.healthy || 0) > Math.max(...Object.entries(window.skiffSeen).filter(([k]) => k !== "healthy").map(([, v]) => v))`))
	seen := value(t, ctx, "states", chromedp.Evaluate[string](`JSON.stringify(Object.keys(window.skiffSeen))`))
	t.Logf("apiserver %s killed: the page showed %s after %.1fs, healthy again after %.1fs", victim, seen,
		shown.Seconds(), time.Since(killed).Seconds())
	// The page shows the state a pass records (SSE every 500 ms): 1.9 s
	// was seen on this 2-core machine under the suite's load (session 18),
	// 4.2 s on a day it ran at half speed (session 19); the figure is
	// logged above, and the bound only catches a page that stopped
	// updating live.
	if shown > 8*time.Second {
		t.Errorf("the page showed the apiserver's failure %.1fs after the kill; want within 8s", shown.Seconds())
	}
	if evalInt(t, ctx, `window.skiffMark || 0`) != 1 {
		t.Fatal("the page was reloaded")
	}
	// The events tab names the replacement.
	run(t, ctx, 20*time.Second, "events",
		chromedp.Navigate(base+"clusters/web?tab=events"),
		waitJS(`document.querySelector("#live").textContent.includes("`+victim+`")`))
	events := value(t, ctx, "events", chromedp.Evaluate[string](`document.querySelector("#live").textContent`))
	if !strings.Contains(events, "Replaced") {
		t.Errorf("events tab: %s", tail(events, 800))
	}

	// A phone-sized window: no sideways scrolling on the topology.
	run(t, ctx, 20*time.Second, "phone-sized topology",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile),
		chromedp.Navigate(base+"clusters/web?tab=topology"),
		waitJS(`document.querySelectorAll("li[data-kind=etcd]").length === 3`))
	shot(t, ctx, "topology-phone")
	if w := evalInt(t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("the topology is %dpx wider than a phone's window", w)
	}
	run(t, ctx, 10*time.Second, "desktop again", chromedp.ResetViewport())

	// A one-time sign-in link from `skiff console`, in a tab without the session.
	cmd := exec.Command(skiffBin, "console")
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("skiff console: %v %s", err, out)
	}
	link := strings.TrimSpace(string(out))
	other := fresh()
	run(t, other, 30*time.Second, "sign in by link",
		chromedp.Navigate(link),
		waitJS(`document.querySelector("tr[data-cluster=web]") !== null`))
	again := fresh()
	run(t, again, 30*time.Second, "the link is good once",
		chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(".error")))
	refused := value(t, again, "the refusal", chromedp.Evaluate[string](`document.querySelector(".error").textContent`))
	if !strings.Contains(refused, "used already") {
		t.Fatalf("reused link: %q", refused)
	}

	// The other tabs, each through its form, as the signed-in principal.
	roleArn := strings.Trim(mustAWSText(t, s, "iam", "get-role", "--role-name", "skiff-cluster-role", "--query", "Role.Arn"), "\"\n ")
	run(t, ctx, 30*time.Second, "grant access by an access entry",
		chromedp.Navigate(base+"clusters/web?tab=access"),
		chromedp.SendKeys(chromedp.CSS("#principal"), roleArn),
		chromedp.SetValue(chromedp.CSS("#policy"), "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"),
		chromedp.SendKeys(chromedp.CSS("#namespaces"), "default"),
		chromedp.Submit(chromedp.CSS("#principal")),
		waitJS(`[...document.querySelectorAll("#live tr")].some(r => r.dataset.principal === "`+roleArn+`" && r.textContent.includes("AmazonEKSViewPolicy (namespaces default)"))`))
	run(t, ctx, 30*time.Second, "tag the cluster",
		chromedp.Navigate(base+"clusters/web?tab=tags"),
		chromedp.SendKeys(chromedp.CSS("#tag-key"), "team"),
		chromedp.SendKeys(chromedp.CSS("#tag-value"), "platform"),
		chromedp.Submit(chromedp.CSS("#tag-key")),
		waitJS(`document.querySelector("#live tr[data-tag=team]") !== null && document.querySelector("#live tr[data-tag=team]").textContent.includes("platform")`))
	if out := mustAWSText(t, s, "eks", "describe-cluster", "--name", "web", "--query", "cluster.tags.team"); strings.Trim(out, "\"\n ") != "platform" {
		t.Fatalf("the console's tag is not on the cluster: %q", out)
	}
	run(t, ctx, 60*time.Second, "add an add-on",
		chromedp.Navigate(base+"clusters/web?tab=addons"),
		chromedp.WaitVisible(chromedp.CSS("#addon")),
		js(`window.skiffAddon = document.querySelector("#addon").value`),
		chromedp.Submit(chromedp.CSS("#addon")),
		waitJS(`document.querySelector("#live tr[data-addon='" + window.skiffAddon + "']") !== null || document.querySelector("#live tr[data-addon]") !== null`))
	run(t, ctx, 60*time.Second, "scale the node group to 3",
		chromedp.Navigate(base+"clusters/web?tab=compute"),
		chromedp.SetValue(chromedp.CSS("#max-ng1"), "3"),
		chromedp.SetValue(chromedp.CSS("#desired-ng1"), "3"),
		chromedp.Submit(chromedp.CSS("#desired-ng1")),
		waitJS(`document.querySelectorAll("#live tr[data-node][data-state=healthy]").length === 3`))
	mustAWS(t, s, "ecr", "create-repository", "--repository-name", "team/app")
	run(t, ctx, 20*time.Second, "the ECR page",
		chromedp.Navigate(base+"ecr"),
		waitJS(`document.querySelector("[data-repository='team/app']") !== null && document.querySelector("[data-repository='team/app'] pre").textContent.includes("docker push")`))
	run(t, ctx, 20*time.Second, "the IAM page",
		chromedp.Navigate(base+"iam"),
		waitJS(`document.querySelector("tr[data-user=admin]") !== null && document.querySelector("tr[data-role=skiff-node-role]").textContent.includes("ec2.amazonaws.com")`))

	// A user whose policy allows only reads sees the cluster but cannot
	// delete it: the console checks nothing itself, the API refuses.
	mustAWS(t, s, "iam", "create-user", "--user-name", "viewer")
	mustAWS(t, s, "iam", "put-user-policy", "--user-name", "viewer", "--policy-name", "read", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["eks:List*","eks:Describe*"],"Resource":"*"}]}`)
	key := mustAWS(t, s, "iam", "create-access-key", "--user-name", "viewer")["AccessKey"].(map[string]any)
	viewer := fresh()
	run(t, viewer, 30*time.Second, "sign in as the viewer",
		chromedp.Navigate(base+"signin"),
		chromedp.SendKeys(chromedp.CSS("#akid"), key["AccessKeyId"].(string)),
		chromedp.SendKeys(chromedp.CSS("#secret"), key["SecretAccessKey"].(string)),
		chromedp.Submit(chromedp.CSS("#secret")),
		waitJS(`document.querySelector("tr[data-cluster=web]") !== null`))
	run(t, viewer, 30*time.Second, "the viewer tries to delete the cluster",
		chromedp.Navigate(base+"clusters/web"),
		chromedp.SendKeys(chromedp.CSS("#confirm"), "web"),
		chromedp.Submit(chromedp.CSS("#confirm")),
		waitJS(`document.querySelector(".error") !== null && location.search.includes("error")`))
	denied := value(t, viewer, "the refusal", chromedp.Evaluate[string](`document.querySelector(".error").textContent`))
	if !strings.Contains(denied, "AccessDeniedException") || !strings.Contains(denied, "eks:DeleteCluster") {
		t.Fatalf("the viewer's delete: %q", denied)
	}
	if st := strings.Trim(mustAWSText(t, s, "eks", "describe-cluster", "--name", "web", "--query", "cluster.status"), "\"\n "); st != "ACTIVE" {
		t.Fatalf("after the viewer's refused delete the cluster is %s", st)
	}

	// A version upgrade from the Updates tab, followed live to Successful.
	upgraded := time.Now()
	run(t, ctx, 5*time.Minute, "upgrade the cluster to 1.37",
		chromedp.Navigate(base+"clusters/web?tab=updates"),
		chromedp.SetValue(chromedp.CSS("#to"), "1.37"),
		chromedp.Submit(chromedp.CSS("#to")),
		waitJS(`document.querySelector("#live tr[data-update]") !== null`),
		waitJS(`document.querySelector("#live tr[data-update]").dataset.status === "Successful"`),
		waitJS(`document.querySelector("#live").textContent.includes("Kubernetes 1.37")`))
	t.Logf("upgraded to 1.37 on the page in %.1fs", time.Since(upgraded).Seconds())

	// Hibernation from the overview: refused while the cluster has nodes.
	run(t, ctx, 30*time.Second, "hibernate a cluster with nodes",
		chromedp.Navigate(base+"clusters/web"),
		chromedp.Click(chromedp.CSS(`form[action$="/hibernate"] button`)),
		waitJS(`document.querySelector(".error") !== null && location.search.includes("error")`))
	if msg := value(t, ctx, "the refusal", chromedp.Evaluate[string](`document.querySelector(".error").textContent`)); !strings.Contains(msg, "InvalidRequestException") || !strings.Contains(msg, "scale its node groups to 0") {
		t.Errorf("hibernating a cluster with nodes: %q", msg)
	}

	// Delete through the forms: the node group, then the cluster (typing
	// its name), and watch it leave the list. In between, with no node
	// left, the cluster hibernates, and is deleted hibernating.
	run(t, ctx, 3*time.Minute, "delete the node group",
		chromedp.Navigate(base+"clusters/web?tab=compute"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/nodegroups/ng1/delete"] button`)),
		chromedp.Click(chromedp.CSS(`form[action$="/nodegroups/ng1/delete"] button`)),
		waitJS(`document.querySelector("#live") && document.querySelector("#live").textContent.includes("No node groups")`))
	run(t, ctx, time.Minute, "hibernate from the overview",
		chromedp.Navigate(base+"clusters/web"),
		chromedp.Click(chromedp.CSS(`form[action$="/hibernate"] button`)),
		waitJS(`document.querySelector('form[action$="/wake"]') !== null`),
		chromedp.Navigate(base+"clusters"),
		waitJS(`document.querySelector("tr[data-cluster=web]").dataset.status === "ACTIVE (hibernating)"`))
	run(t, ctx, 2*time.Minute, "delete the cluster",
		chromedp.Navigate(base+"clusters/web"),
		chromedp.SendKeys(chromedp.CSS("#confirm"), "web"),
		chromedp.Submit(chromedp.CSS("#confirm")),
		waitJS(`location.pathname === "/console/clusters"`),
		waitJS(`document.querySelector("tr[data-cluster=web]") === null`))
}
